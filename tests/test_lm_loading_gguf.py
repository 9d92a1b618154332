"""GGUF files (`decoding.lm.loading.gguf_files`; written here as llama.cpp's converter writes
them) load with `decoding.load_model`: every tensor type dequantises as ``gguf``'s own
dequantisers do, the ``llama`` query/key permutation is undone, and the model computes what the
same weights give from a safetensors folder. The container reader agrees with
``gguf.GGUFReader``; anything not supported is refused by name; the CLI runs a GGUF with its
tokenizer and EOS.
"""

from __future__ import annotations

import json
import mmap
import struct

import numpy as np
import pytest

import decoding
from decoding.lm.loading.gguf_files import GGUFFile, GGUFSource, gguf_config

from checkpoints import permute, write_gguf

gguf = pytest.importorskip("gguf")

safetensors_numpy = pytest.importorskip("safetensors.numpy")

Q = gguf.GGMLQuantizationType

PROMPTS = [(3, 1, 4, 1, 5, 9, 2, 6), (7, 7), (2, 40, 11)]

TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]


def config(arch="llama", d=256, heads=4, kv=2, ff=256, layers=2, vocab=48, **extra):
    """A config.json for the weights (and the GGUF's metadata); K-quants need rows of 256."""
    return {
        "model_type": arch, "vocab_size": vocab, "hidden_size": d, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500.0,
        "tie_word_embeddings": False, "hidden_act": "silu",
    } | extra  # fmt: skip


def tensors(cfg, rng, tied=False, biases=False):
    """Random HF-named Llama tensors (linear weights ``[out, in]``), activations of order one."""
    d, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    e = cfg.get("head_dim", d // cfg["num_attention_heads"])
    hq, hk = cfg["num_attention_heads"] * e, cfg["num_key_value_heads"] * e
    out = {"model.embed_tokens.weight": rng.normal(size=(v, d)),
           "model.norm.weight": rng.uniform(0.5, 1.5, size=d)}  # fmt: skip
    if not tied:
        out["lm_head.weight"] = rng.normal(size=(v, d)) * d**-0.5
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": rng.uniform(0.5, 1.5, size=d),
            p + "post_attention_layernorm.weight": rng.uniform(0.5, 1.5, size=d),
            p + "self_attn.q_proj.weight": rng.normal(size=(hq, d)) * d**-0.5,
            p + "self_attn.k_proj.weight": rng.normal(size=(hk, d)) * d**-0.5,
            p + "self_attn.v_proj.weight": rng.normal(size=(hk, d)) * d**-0.5,
            p + "self_attn.o_proj.weight": rng.normal(size=(d, hq)) * hq**-0.5,
            p + "mlp.gate_proj.weight": rng.normal(size=(ff, d)) * d**-0.5,
            p + "mlp.up_proj.weight": rng.normal(size=(ff, d)) * d**-0.5,
            p + "mlp.down_proj.weight": rng.normal(size=(d, ff)) * ff**-0.5,
        }
        if biases:
            out |= {
                p + "self_attn.q_proj.bias": rng.normal(size=hq) * 0.3,
                p + "self_attn.k_proj.bias": rng.normal(size=hk) * 0.3,
                p + "self_attn.v_proj.bias": rng.normal(size=hk) * 0.3,
            }
    return out


def folder_of(path, cfg, values):
    """A safetensors checkpoint folder with these (float32) tensors."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in values.items()}
    safetensors_numpy.save_file(arrays, str(path / "model.safetensors"))
    return path


def with_freqs(source, target, name, values):
    """A copy of GGUF ``source`` with one more F32 tensor."""
    reader = gguf.GGUFReader(str(source))
    writer = gguf.GGUFWriter(str(target), "llama")
    for field in reader.fields.values():
        if not field.name.startswith("GGUF.") and field.name != "general.architecture":
            writer.add_key_value(field.name, field.contents(), field.types[0])
    for t in reader.tensors:
        writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    writer.add_tensor(name, np.asarray(values, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def small(tmp_path, name="m.gguf", arch="llama", qtype=Q.F32, metadata=(), cfg=None, values=None):
    cfg = config(arch, d=64, ff=96) if cfg is None else cfg
    values = tensors(cfg, np.random.default_rng(9)) if values is None else values
    write_gguf(tmp_path / name, arch, cfg, values, qtype, metadata=metadata)
    return tmp_path / name


# -- worked cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", TYPES, ids=lambda q: q.name)
def test_every_tensor_type_loads_as_gguf_dequantises_it(tmp_path, qtype):
    """The held weights are ``gguf.quants.dequantize`` of the stored blocks (un-permuted), and
    the logits are those of a float32 folder holding exactly those values."""
    cfg = config()
    rng = np.random.default_rng(int(qtype))
    original = tensors(cfg, rng)
    expected = write_gguf(tmp_path / "m.gguf", "llama", cfg, original, qtype, rng)
    model = decoding.load_model(tmp_path / "m.gguf", dtype="float32")
    block = model.weights.blocks[1]
    np.testing.assert_array_equal(
        block.q_w_DX, expected["model.layers.1.self_attn.q_proj.weight"].T
    )
    np.testing.assert_array_equal(
        block.k_w_DY, expected["model.layers.1.self_attn.k_proj.weight"].T
    )
    np.testing.assert_array_equal(
        block.down_w_FD, expected["model.layers.1.mlp.down_proj.weight"].T
    )
    np.testing.assert_array_equal(model.weights.embed_VD, expected["model.embed_tokens.weight"])
    np.testing.assert_array_equal(model.weights.head_DV, expected["lm_head.weight"].T)
    np.testing.assert_array_equal(
        block.mlp_norm_D, expected["model.layers.1.post_attention_layernorm.weight"]
    )
    reference = decoding.load_model(folder_of(tmp_path / "f", cfg, expected), dtype="float64")
    ours = decoding.load_model(tmp_path / "m.gguf", dtype="float64")
    np.testing.assert_allclose(
        ours.next_token_logits(PROMPTS), reference.next_token_logits(PROMPTS), rtol=0, atol=1e-10
    )
    # The blocks really encode the weights (K-quants excepted: random blocks).
    if qtype not in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        q = original["model.layers.1.self_attn.q_proj.weight"]
        got = expected["model.layers.1.self_attn.q_proj.weight"]
        assert np.abs(got - q).max() < 0.2 * np.abs(q).max()


def test_float32_tensors_stay_in_the_file_and_permuted_ones_are_restored(tmp_path):
    cfg = config(d=64, ff=96, heads=4, kv=2)
    values = tensors(cfg, np.random.default_rng(5))
    write_gguf(tmp_path / "m.gguf", "llama", cfg, values)
    model = decoding.load_model(tmp_path / "m.gguf", dtype="float32")
    up = model.weights.blocks[0].up_w_DF
    assert not up.flags.writeable and not up.T.flags.owndata  # a view of the mapped file
    base = up
    while isinstance(base.base, np.ndarray):
        base = base.base
    assert isinstance(base.base, memoryview) and isinstance(base.base.obj, mmap.mmap)
    # A norm (1-D, small) is copied: a view would keep the file's pages around it mapped.
    norm = model.weights.blocks[0].mlp_norm_D
    while isinstance(norm.base, np.ndarray):
        norm = norm.base
    assert norm.flags.owndata
    np.testing.assert_array_equal(
        norm, values["model.layers.0.post_attention_layernorm.weight"].astype(np.float32)
    )
    np.testing.assert_array_equal(
        up, values["model.layers.0.mlp.up_proj.weight"].astype(np.float32).T
    )
    q = values["model.layers.0.self_attn.q_proj.weight"].astype(np.float32)
    np.testing.assert_array_equal(model.weights.blocks[0].q_w_DX, q.T)
    assert not np.array_equal(permute(q, 4), q)  # the file did hold them permuted


@pytest.mark.parametrize(
    ("arch", "tied", "biases", "extra"),
    [
        ("llama", True, False, {}),
        ("llama", False, True, {}),  # llama.cpp permutes q/k biases too
        ("qwen2", False, True, {}),  # no permutation in qwen2 files
        ("qwen2", True, True, {"head_dim": 24}),  # explicit key_length
        ("llama", False, False, {"num_key_value_heads": 1}),
    ],
)
def test_logits_equal_the_same_weights_from_a_folder(tmp_path, arch, tied, biases, extra):
    cfg = config(arch, d=64, ff=96, tie_word_embeddings=tied) | extra
    values = tensors(cfg, np.random.default_rng(6), tied=tied, biases=biases)
    expected = write_gguf(tmp_path / "m.gguf", arch, cfg, values)
    gguf_model = decoding.load_model(tmp_path / "m.gguf", dtype="float64")
    folder_model = decoding.load_model(folder_of(tmp_path / "f", cfg, expected), dtype="float64")
    assert repr(gguf_model) == repr(folder_model)
    assert gguf_model.max_sequence_length == 64
    np.testing.assert_allclose(
        gguf_model.next_token_logits(PROMPTS), folder_model.next_token_logits(PROMPTS),
        rtol=0, atol=1e-10,
    )  # fmt: skip


def test_rope_freqs_divide_the_rotary_frequencies_as_llama3_scaling_does(tmp_path):
    """llama.cpp stores Llama 3.1's rope scaling as per-frequency divisors (``rope_freqs``):
    the GGUF gives the logits of a folder whose config names the ``llama3`` scaling."""
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}  # fmt: skip
    cfg = config(d=64, ff=96)
    values = tensors(cfg, np.random.default_rng(8))
    folder = folder_of(tmp_path / "f", cfg | {"rope_scaling": scaling}, values)
    e, theta = 16, cfg["rope_theta"]
    plain = 1.0 / theta ** (np.arange(0, e, 2) / e)
    wavelength = 2 * np.pi / plain
    low, high = 16 / 1.0, 16 / 4.0
    smooth = (16 / wavelength - 1.0) / (4.0 - 1.0)
    divisors = np.where(
        wavelength < high, 1.0, np.where(wavelength > low, 8.0, 1 / ((1 - smooth) / 8 + smooth))
    )
    write_gguf(tmp_path / "m.gguf", "llama", cfg, values)
    with_freqs(tmp_path / "m.gguf", tmp_path / "r.gguf", "rope_freqs.weight", divisors)
    got = decoding.load_model(tmp_path / "r.gguf", dtype="float64").next_token_logits(PROMPTS)
    want = decoding.load_model(folder, dtype="float64").next_token_logits(PROMPTS)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    plain_logits = decoding.load_model(tmp_path / "m.gguf", dtype="float64").next_token_logits(
        PROMPTS
    )
    assert np.abs(plain_logits - want).max() > 1e-3


def test_the_container_reads_as_gguf_reader_reads_it(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "kv.gguf"), "llama")
    values = {
        "t.u8": (7, gguf.GGUFValueType.UINT8), "t.i8": (-7, gguf.GGUFValueType.INT8),
        "t.u16": (700, gguf.GGUFValueType.UINT16), "t.i16": (-700, gguf.GGUFValueType.INT16),
        "t.u32": (70000, gguf.GGUFValueType.UINT32), "t.i32": (-70000, gguf.GGUFValueType.INT32),
        "t.u64": (2**40, gguf.GGUFValueType.UINT64), "t.i64": (-(2**40), gguf.GGUFValueType.INT64),
        "t.f32": (0.5, gguf.GGUFValueType.FLOAT32), "t.f64": (0.1, gguf.GGUFValueType.FLOAT64),
        "t.bool": (True, gguf.GGUFValueType.BOOL), "t.str": ("héllo", gguf.GGUFValueType.STRING),
        "t.strs": (["a", "ĠB", "<|x|>"], gguf.GGUFValueType.ARRAY),
        "t.ints": ([1, -2, 3], gguf.GGUFValueType.ARRAY),
        "t.floats": ([0.25, -1.5], gguf.GGUFValueType.ARRAY),
    }  # fmt: skip
    for key, (value, kind) in values.items():
        writer.add_key_value(key, value, kind)
    writer.add_tensor("a", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.add_tensor("b", np.arange(64, dtype=np.float32).reshape(2, 32), raw_dtype=None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = GGUFFile(tmp_path / "kv.gguf")
    theirs = gguf.GGUFReader(str(tmp_path / "kv.gguf"))
    for key in values:
        want = theirs.fields[key].contents()
        got = ours.metadata[key]
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-7)
        elif isinstance(want, list) and want and isinstance(want[0], float):
            assert got == pytest.approx(want)
        else:
            assert got == want, key
    assert ours.metadata["general.architecture"] == "llama"
    for t in theirs.tensors:
        mine = ours.tensors[t.name]
        assert mine.shape == tuple(int(x) for x in t.shape[::-1])
        assert mine.offset == t.data_offset
        data = np.frombuffer(ours.file.map, np.float32, int(np.prod(mine.shape)), mine.offset)
        np.testing.assert_array_equal(data.reshape(mine.shape), t.data)


def test_the_command_line_runs_a_gguf_with_its_tokenizer_and_eos(tmp_path, capsys):
    """``python -m decoding --model FILE.gguf --text ...``: the file's model, its byte-level
    tokenizer and its EOS id (``tokenizer.ggml.eos_token_id``)."""
    from decoding.cli import main

    tokens = [*"abcdefghijklmnopqrstuvwxyz", "Ġ", ".", "ab", "Ġa", *"ABCDEFGHIJKLMNO", "<eos>"]
    cfg = config(d=64, ff=96, vocab=len(tokens))
    string, array, u32 = (
        gguf.GGUFValueType.STRING,
        gguf.GGUFValueType.ARRAY,
        gguf.GGUFValueType.UINT32,
    )
    metadata = [
        ("tokenizer.ggml.model", ("gpt2", string)),
        ("tokenizer.ggml.pre", ("gpt-2", string)),
        ("tokenizer.ggml.tokens", (tokens, array)),
        ("tokenizer.ggml.token_type", ([1] * (len(tokens) - 1) + [3], array)),
        ("tokenizer.ggml.merges", (["a b", "Ġ a"], array)),
        ("tokenizer.ggml.eos_token_id", (len(tokens) - 1, u32)),
    ]
    path = tmp_path / "m.gguf"
    write_gguf(path, "llama", cfg, tensors(cfg, np.random.default_rng(4)), metadata=metadata)
    assert main(["--model", str(path), "--text", "ab a.", "--decoder", "greedy", "--json",
                 "--max-new-tokens", "5"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    prompt = [tokens.index(t) for t in ("ab", "Ġa", ".")]
    assert document["results"][0]["prompt"] == prompt
    assert document["settings"]["eos_token_id"] == len(tokens) - 1
    model = decoding.load_model(path)
    (beam,) = decoding.GreedyDecoder(5, eos_token_id=len(tokens) - 1).decode(model, [prompt])[0]
    assert document["results"][0]["beams"][0]["tokens"] == list(beam.tokens)
    text = decoding.load_tokenizer(path).decode(beam.tokens, skip_special_tokens=True)
    assert document["results"][0]["beams"][0]["text"] == text


# -- errors ----------------------------------------------------------------------------------------


def test_an_unsupported_architecture_is_refused_naming_it(tmp_path):
    path = small(tmp_path, arch="gemma")
    with pytest.raises(ValueError) as info:
        decoding.load_model(path)
    assert str(info.value) == (
        f"{path}: GGUF architecture 'gemma' is not supported (supported: llama, qwen2)"
    )


@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q2_K, Q.Q8_1, Q.F64], ids=lambda q: q.name)
def test_an_unsupported_tensor_type_is_refused_naming_it_before_any_work(tmp_path, qtype):
    cfg = config()
    values = tensors(cfg, np.random.default_rng(1))
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    if qtype == Q.F64:
        writer.add_tensor("token_embd.weight", values["model.embed_tokens.weight"])
    else:
        size, nbytes = gguf.GGML_QUANT_SIZES[qtype]
        blocks = np.zeros((48, 256 // size * nbytes), dtype=np.uint8)
        writer.add_tensor("token_embd.weight", blocks, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m.gguf")
    assert str(info.value) == (
        f"{tmp_path / 'm.gguf'}: tensor 'token_embd.weight' has type {qtype.name}, which is not "
        "supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)"
    )


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ([("llama.expert_count", (4, gguf.GGUFValueType.UINT32))], "llama.expert_count = 4"),
        ([("llama.rope.scaling.type", ("yarn", gguf.GGUFValueType.STRING))],
         "llama.rope.scaling.type = 'yarn'"),
        ([("llama.attention.sliding_window", (8, gguf.GGUFValueType.UINT32))],
         "llama.attention.sliding_window = 8"),
    ],
)  # fmt: skip
def test_metadata_with_no_equivalent_here_is_refused_naming_the_key(tmp_path, metadata, named):
    path = small(tmp_path, metadata=metadata)
    with pytest.raises(ValueError) as info:
        decoding.load_model(path)
    assert str(info.value) == f"{path}: {named} is not supported"


def test_partial_rotary_embeddings_are_refused(tmp_path):
    path = small(tmp_path)
    data = bytearray(path.read_bytes())
    key = b"llama.rope.dimension_count"
    at = data.index(key) + len(key) + 4  # the u32 value type, then the value
    data[at : at + 4] = (8).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"llama\.rope\.dimension_count = 8 is not supported"):
        decoding.load_model(path)


def test_an_unknown_tensor_is_refused_naming_it(tmp_path):
    cfg = config(d=64, ff=96)
    values = tensors(cfg, np.random.default_rng(2))
    write_gguf(tmp_path / "m.gguf", "llama", cfg, values)
    with_freqs(tmp_path / "m.gguf", tmp_path / "x.gguf", "blk.0.attn_q_norm.weight", np.ones(16))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "x.gguf")
    assert str(info.value) == (
        f"{tmp_path / 'x.gguf'}: tensor 'blk.0.attn_q_norm.weight' is not one this loader knows"
    )


def test_files_that_are_not_gguf_are_refused_naming_them(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ValueError) as info:
        decoding.load_model(fake)
    assert str(info.value) == f"{fake} is not a GGUF file (it does not start with 'GGUF')"
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError) as info:
        decoding.load_model(other)
    assert str(info.value) == (
        f"{other} is neither a checkpoint folder nor a GGUF file (it does not start with "
        "'GGUF'): give a checkpoint folder or a .gguf file"
    )
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_model(tmp_path / "absent.gguf")
    assert str(info.value) == f"GGUF file {tmp_path / 'absent.gguf'} does not exist"
    path = small(tmp_path)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is not a readable GGUF file"):
        decoding.load_model(truncated)
    short = tmp_path / "short.gguf"
    short.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="lies past the end of the file"):
        decoding.load_model(short)
    version = tmp_path / "v1.gguf"
    version.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + path.read_bytes()[8:])
    with pytest.raises(ValueError) as info:
        decoding.load_model(version)
    assert str(info.value) == f"{version}: GGUF version 1 is not supported (2 and 3 are)"


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16], ids=lambda q: q.name)
def test_float_files_load_without_the_gguf_package(tmp_path, monkeypatch, qtype):
    """Weights need NumPy alone (docs/models.md): float tensors are read straight from the
    file; only the quantised types call ``gguf``'s dequantisers."""
    cfg = config(d=64, ff=96, layers=1)
    expected = write_gguf(tmp_path / "m.gguf", "llama", cfg, tensors(cfg, np.random.default_rng(8)),
                          qtype)  # fmt: skip
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)
    for dtype in ("float32", "float64"):
        model = decoding.load_model(tmp_path / "m.gguf", dtype=dtype)
        block = model.weights.blocks[0]
        np.testing.assert_array_equal(
            block.q_w_DX, expected["model.layers.0.self_attn.q_proj.weight"].T
        )
        np.testing.assert_array_equal(
            block.up_w_DF, expected["model.layers.0.mlp.up_proj.weight"].T
        )
        np.testing.assert_array_equal(
            block.attn_norm_D, expected["model.layers.0.input_layernorm.weight"]
        )
        np.testing.assert_array_equal(model.weights.norm_D, expected["model.norm.weight"])


def test_a_quantised_file_without_the_gguf_package_names_the_install(tmp_path, monkeypatch):
    path = small(
        tmp_path, qtype=Q.Q8_0, cfg=config(), values=tensors(config(), np.random.default_rng(3))
    )
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[hf\]'"):
        decoding.load_model(path)


# -- the configuration from the metadata alone ---------------------------------------------------

U32, F32, BOOL, STRING, ARRAY = (
    gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.BOOL,
    gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY,
)  # fmt: skip


def metadata_only(path, entries):
    """A ``llama`` GGUF of no tensors holding the metadata ``entries`` (key -> (value, type))."""
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, (value, kind) in entries.items():
        writer.add_key_value(key, value, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_config_from_the_fewest_keys_takes_the_defaults_and_the_token_count(tmp_path):
    """One head and a width of 8 are all it needs: the vocabulary is the token list's length
    when there is no embedding, the KV heads default to the heads, the head width to the
    width over the heads; and an integer where a float is read is taken as it is."""
    least = {"llama.attention.head_count": (1, U32), "llama.embedding_length": (8, U32)}
    tokens = {"tokenizer.ggml.tokens": (["a", "b", "c"], ARRAY)}
    path = metadata_only(tmp_path / "m.gguf", least | tokens)
    assert gguf_config(GGUFFile(path)) == {
        "model_type": "llama", "vocab_size": 3, "hidden_size": 8, "num_attention_heads": 1,
        "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 2048, "tie_word_embeddings": True, "hidden_act": "silu",
    }  # fmt: skip
    path = metadata_only(
        tmp_path / "n.gguf", least | {"llama.rope.freq_base": (500, U32)}
    )  # no tokens: no vocabulary size
    config = gguf_config(GGUFFile(path))
    assert "vocab_size" not in config
    assert config["rope_theta"] == 500


def test_linear_rope_scaling_comes_from_either_key_and_a_factor_of_1_is_none(tmp_path):
    """llama.cpp's ``rope.scaling.type`` "linear" with its factor, or the older
    ``rope.scale_linear`` alone, is HF's linear rope scaling; a factor of 1 scales nothing."""
    least = {"llama.attention.head_count": (1, U32), "llama.embedding_length": (8, U32)}
    for name, entries, expected in [
        ("old", {"llama.rope.scale_linear": (2.0, F32)}, {"rope_type": "linear", "factor": 2.0}),
        ("typed", {"llama.rope.scaling.type": ("linear", STRING),
                   "llama.rope.scaling.factor": (4.0, F32)},
         {"rope_type": "linear", "factor": 4.0}),
        ("one", {"llama.rope.scaling.factor": (1.0, F32)}, None),
    ]:  # fmt: skip
        config = gguf_config(GGUFFile(metadata_only(tmp_path / f"{name}.gguf", least | entries)))
        assert config.get("rope_scaling") == expected, name


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"llama.attention.layer_norm_rms_epsilon": (True, BOOL)},
         "llama.attention.layer_norm_rms_epsilon is True, not a float"),
        ({"llama.rope.freq_base": ("x", STRING)}, "llama.rope.freq_base is 'x', not a float"),
        ({"llama.expert_count": (1, U32)}, "llama.expert_count = 1 is not supported"),
        ({"llama.attention.head_count": (1, U32)},
         "llama.attention.head_count or embedding_length is missing"),
        ({"llama.embedding_length": (8, U32)},
         "llama.attention.head_count or embedding_length is missing"),
        ({"llama.attention.head_count": (2, U32), "llama.embedding_length": (0, U32)},
         "llama.embedding_length must be positive, got 0"),
        ({"llama.attention.value_length": (4, U32)},
         "llama.attention.value_length = 4 is not supported"),
    ],
)  # fmt: skip
def test_metadata_that_makes_no_model_is_refused_naming_the_key_and_value(
    tmp_path, entries, message
):
    least = {"llama.attention.head_count": (2, U32), "llama.embedding_length": (16, U32)}
    if "is missing" in message:
        least = {}
    path = metadata_only(tmp_path / "m.gguf", least | entries)
    with pytest.raises(ValueError) as info:
        decoding.load_model(path)
    assert str(info.value) == f"{path}: {message}"


def test_permuted_and_one_dimensional_tensors_come_in_the_dtype_and_shape_asked_for(tmp_path):
    """Query/key weights and biases (un-permuted as a whole) and 1-D norms are built in the
    model's dtype, in their own shape; a transposed query weight is the transpose."""
    cfg = config(d=64, ff=96, heads=4, kv=2)
    values = tensors(cfg, np.random.default_rng(12), biases=True)
    expected = write_gguf(tmp_path / "m.gguf", "llama", cfg, values)
    model = decoding.load_model(tmp_path / "m.gguf", dtype="float64")
    block = model.weights.blocks[0]
    for got, name in [
        (block.q_w_DX, "self_attn.q_proj.weight"),
        (block.k_b_Y, "self_attn.k_proj.bias"),
        (block.mlp_norm_D, "post_attention_layernorm.weight"),
    ]:
        want = expected["model.layers.0." + name]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want.T)  # .T: a 1-D array is its own transpose
    assert block.mlp_norm_D.shape == (64,)
    assert block.k_b_Y.shape == (32,)
    file = GGUFFile(tmp_path / "m.gguf")
    source = GGUFSource(file, gguf_config(file))
    q = "model.layers.1.self_attn.q_proj.weight"
    got = source.get_transposed(q, (64, 64), np.dtype(np.float32))
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected[q].T)
    k = "model.layers.1.self_attn.k_proj.bias"
    for name, shape in [(q, (64, 64)), (k, (32,))]:
        got = source.get(name, shape, np.dtype(np.float64))
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected[name])


# -- metadata values, byte by byte ---------------------------------------------------------------


def raw_gguf(path, *entries, kv_count=None):
    """A version-3 GGUF of no tensors whose metadata is ``entries`` (already encoded), ending
    where the last entry ends; ``kv_count`` overrides the entry count in the header."""
    count = len(entries) if kv_count is None else kv_count
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, count) + b"".join(entries))
    return path


def entry(key, kind, payload):
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + payload


def test_metadata_values_read_as_the_gguf_spec_lays_them_out(tmp_path):
    """A bool array is true where its byte is nonzero; arrays nest; a string's bytes that are
    not UTF-8 read as U+FFFD; a value may end on the file's last byte."""
    path = raw_gguf(
        tmp_path / "v.gguf",
        entry("s", 8, struct.pack("<Q", 3) + b"a\xffb"),
        # array of arrays (9) of u8 (0): [[1, 2], [3]]
        entry(
            "n",
            9,
            struct.pack("<IQ", 9, 2)
            + struct.pack("<IQ", 0, 2)
            + b"\x01\x02"
            + struct.pack("<IQ", 0, 1)
            + b"\x03",
        ),  # fmt: skip
        entry("b", 9, struct.pack("<IQ", 7, 3) + b"\x00\x01\x02"),
    )
    metadata = GGUFFile(path).metadata
    assert metadata["s"] == "a\ufffdb"
    assert metadata["n"] == [[1, 2], [3]]
    assert metadata["b"] == [False, True, True]
    assert all(type(x) is bool for x in metadata["b"])
    path = raw_gguf(tmp_path / "u.gguf", entry("u", 4, struct.pack("<I", 70000)))
    assert GGUFFile(path).metadata == {"u": 70000}


def test_truncated_or_malformed_metadata_is_refused_saying_why(tmp_path):
    def refusal(*entries, kv_count=None):
        path = raw_gguf(tmp_path / "x.gguf", *entries, kv_count=kv_count)
        with pytest.raises(ValueError) as info:
            GGUFFile(path)
        prefix = f"{path} is not a readable GGUF file: "
        assert str(info.value).startswith(prefix)
        return str(info.value)[len(prefix) :]

    cut = "it ends inside its header"
    assert refusal(entry("u", 4, b"\x01\x02")) == cut  # a u32 of two bytes
    assert refusal(entry("s", 8, struct.pack("<Q", 100) + b"abc")) == cut  # 3 of 100 bytes
    assert refusal(entry("a", 9, struct.pack("<IQ", 4, 10) + b"\0" * 8)) == cut  # 2 of 10 u32
    assert refusal(entry("a", 9, struct.pack("<IQ", 2**32 - 1, 1))) == (
        "unknown metadata array item type 4294967295"
    )
    # one entry and MAX_GGUF_ITEMS array items: one too many; one fewer is allowed (the
    # array then ends early)
    limit = "decoding.lm.loading.MAX_GGUF_ITEMS = 4194304 items"
    assert refusal(entry("a", 9, struct.pack("<IQ", 0, 2**22))) == (
        f"array count 4194304 takes it past {limit}"
    )
    assert refusal(entry("a", 9, struct.pack("<IQ", 0, 2**22 - 1))) == cut
