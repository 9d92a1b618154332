"""`load_model`, `NumpyLlamaLM`, `Tokenizer`: small checkpoints written here with
``safetensors.numpy.save_file`` and HF key names (no torch), loaded and checked against the
model's own full recompute, the weights written, and one prompt at a time."""

from __future__ import annotations

import json
import mmap
import sys
import tracemalloc

import numpy as np
import pytest

import decoding

from checkpoints import write_gpt2, write_llama

safetensors_numpy = pytest.importorskip("safetensors.numpy")


CHECKPOINTS = {
    "gpt2": lambda f, r: write_gpt2(f, r),
    "gpt2-no-prefix": lambda f, r: write_gpt2(f, r, prefix=""),
    "llama-gqa": lambda f, r: write_llama(f, r),
    "llama-mha-tied": lambda f, r: write_llama(f, r, kv=4, tied=True),
    "mistral": lambda f, r: write_llama(f, r, model_type="mistral", kv=1),
    "qwen2-biases": lambda f, r: write_llama(f, r, model_type="qwen2", biases=True),
}


@pytest.fixture(params=list(CHECKPOINTS), scope="module")
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    tensors = CHECKPOINTS[request.param](folder, np.random.default_rng(len(request.param)))
    return request.param, folder, tensors


def test_cached_path_equals_full_recompute_with_reordered_parents(checkpoint):
    name, folder, _ = checkpoint
    model = decoding.load_model(folder, dtype="float64")
    expected_type = (
        decoding.NumpyTransformerLM if name.startswith("gpt2") else decoding.NumpyLlamaLM
    )
    assert type(model) is expected_type
    prompts = [(1, 2, 3, 4), (5,), (6, 7)]
    _, s0 = model.prefill(prompts)
    logits1, s1 = model.extend(s0, np.array([2, 2, 0, 1]), np.array([8, 9, 10, 11]))
    sequences1 = [(6, 7, 8), (6, 7, 9), (1, 2, 3, 4, 10), (5, 11)]
    np.testing.assert_allclose(logits1, model.next_token_logits(sequences1), atol=1e-9)
    logits2, _ = model.extend(s1, np.array([3, 0]), np.array([12, 13]))
    np.testing.assert_allclose(
        logits2, model.next_token_logits([(5, 11, 12), (6, 7, 8, 13)]), atol=1e-9
    )
    # An older state extended again gives its own logits.
    again, _ = model.extend(s0, np.array([1]), np.array([14]))
    np.testing.assert_allclose(again, model.next_token_logits([(5, 14)]), atol=1e-9)


def test_left_padded_batches_equal_one_prompt_at_a_time(checkpoint):
    _, folder, _ = checkpoint
    model = decoding.load_model(folder, dtype="float64")
    prompts = [(1, 2, 3, 4, 5, 6), (7,), (8, 9, 10)]
    batched = model.next_token_logits(prompts)
    for i, prompt in enumerate(prompts):
        np.testing.assert_allclose(batched[i], model.next_token_logits([prompt])[0], atol=1e-9)
    beams = decoding.BeamSearchDecoder(3, 4, eos_token_id=0).decode(model, prompts)
    for i, prompt in enumerate(prompts):
        alone = decoding.BeamSearchDecoder(3, 4, eos_token_id=0).decode(model, [prompt])[0]
        assert [b.tokens for b in beams[i]] == [b.tokens for b in alone]


class Recompute(decoding.LanguageModel):
    """Only next_token_logits: the decoder's default path, full recompute each step."""

    def __init__(self, inner):
        self.inner, self.vocab_size = inner, inner.vocab_size

    def next_token_logits(self, sequences):
        return self.inner.next_token_logits([tuple(s) for s in sequences])


def test_beam_search_on_a_loaded_model_equals_full_recompute(checkpoint):
    _, folder, _ = checkpoint
    model = decoding.load_model(folder, dtype="float64")
    prompts = [[1, 2], [3]]
    cached = decoding.BeamSearchDecoder(3, 5, eos_token_id=0).decode(model, prompts)
    plain = decoding.BeamSearchDecoder(3, 5, eos_token_id=0).decode(Recompute(model), prompts)
    assert [[b.tokens for b in r] for r in cached] == [[b.tokens for b in r] for r in plain]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_model_round_trips_the_weights_bit_for_bit(tmp_path, dtype):
    rng = np.random.default_rng(7)
    gpt = write_gpt2(tmp_path / "g", rng)
    model = decoding.load_model(tmp_path / "g", dtype=dtype)
    np.testing.assert_array_equal(model.weights.wte_VD, gpt["transformer.wte.weight"].astype(dtype))
    qkv = gpt["transformer.h.1.attn.c_attn.weight"].astype(dtype)
    np.testing.assert_array_equal(model.weights.blocks[1].qkv_w_D3D, qkv)
    llama = write_llama(tmp_path / "l", rng)
    model = decoding.load_model(tmp_path / "l", dtype=dtype)
    assert model.dtype == np.dtype(dtype)
    q = llama["model.layers.0.self_attn.q_proj.weight"].astype(dtype).T
    np.testing.assert_array_equal(model.weights.blocks[0].q_w_DX, q)
    assert model.weights.blocks[0].q_w_DX.dtype == np.dtype(dtype)


def test_sharded_checkpoints_load(tmp_path):
    rng = np.random.default_rng(3)
    tensors = write_llama(tmp_path / "one", rng)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((tmp_path / "one" / "config.json").read_text())
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        safetensors_numpy.save_file({n: tensors[n] for n in part}, str(sharded / shard))
        weight_map |= dict.fromkeys(part, shard)
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    one = decoding.load_model(tmp_path / "one", dtype="float64")
    two = decoding.load_model(sharded, dtype="float64")
    prompts = [(1, 2, 3)]
    # Exact: the same weights in the same layout through the same calls.
    np.testing.assert_array_equal(one.next_token_logits(prompts), two.next_token_logits(prompts))


def malformed(tmp_path, rng):
    """(folder, error type, words in the message) for each broken checkpoint."""
    cases = []

    def new(name):
        folder = tmp_path / name
        write_llama(folder, rng)
        return folder

    cases.append((tmp_path / "absent", FileNotFoundError, ["does not exist"]))
    f = new("no-config")
    (f / "config.json").unlink()
    cases.append((f, FileNotFoundError, ["config.json"]))
    f = new("no-weights")
    (f / "model.safetensors").unlink()
    cases.append((f, FileNotFoundError, ["model.safetensors"]))
    f = new("bad-json")
    (f / "config.json").write_text("{not json")
    cases.append((f, ValueError, ["config.json", "JSON"]))
    for name, change, words in [
        ("unknown-type", {"model_type": "bert"}, ["'bert'", "gpt2", "llama", "qwen2"]),
        ("rope-scaling", {"rope_scaling": {"rope_type": "yarn"}}, ["rope_scaling", "'yarn'"]),
        ("rope-params", {"rope_parameters": {"rope_type": "llama3"}}, ["'llama3'"]),
        ("bad-heads", {"num_key_value_heads": 3}, ["num_key_value_heads"]),
        ("missing-key", {"hidden_size": None}, ["hidden_size"]),
        ("bad-act", {"hidden_act": "gelu"}, ["hidden_act", "'gelu'"]),
    ]:
        f = new(name)
        config = json.loads((f / "config.json").read_text()) | change
        config = {k: v for k, v in config.items() if v is not None}
        (f / "config.json").write_text(json.dumps(config))
        cases.append((f, ValueError, words))
    f = new("missing-tensor")
    tensors = safetensors_numpy.load_file(str(f / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    safetensors_numpy.save_file(tensors, str(f / "model.safetensors"))
    cases.append((f, ValueError, ["model.layers.1.mlp.up_proj.weight", "missing"]))
    f = new("wrong-shape")
    tensors = safetensors_numpy.load_file(str(f / "model.safetensors"))
    tensors["model.norm.weight"] = np.ones(5)
    safetensors_numpy.save_file(tensors, str(f / "model.safetensors"))
    cases.append((f, ValueError, ["model.norm.weight", "(5,)"]))
    f = new("missing-shard")
    (f / "model.safetensors").unlink()
    index = {"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}
    (f / "model.safetensors.index.json").write_text(json.dumps(index))
    cases.append((f, FileNotFoundError, ["model-00001-of-00002.safetensors"]))
    return cases


def test_every_malformed_checkpoint_is_refused_by_name(tmp_path):
    for folder, error, words in malformed(tmp_path, np.random.default_rng(0)):
        with pytest.raises(error) as info:
            decoding.load_model(folder)
        assert all(w in str(info.value) for w in words), (folder.name, str(info.value))


def test_bad_dtype_is_refused_before_reading(tmp_path):
    with pytest.raises((TypeError, ValueError), match="dtype"):
        decoding.load_model(tmp_path, dtype="int32")


def test_loading_keeps_only_model_dtype_weights(tmp_path):
    """Peak traced memory of a float32 load stays under 1.5x the float32 weights."""
    rng = np.random.default_rng(1)
    tensors = write_llama(tmp_path / "m", rng, d=64, layers=4, heads=4, kv=2, ff=192,
                          vocab=2000, dtype=np.float32)  # fmt: skip
    size = sum(t.size for t in tensors.values()) * 4
    tracemalloc.start()
    model = decoding.load_model(tmp_path / "m", dtype="float32")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert model.weights.embed_VD.dtype == np.float32
    assert peak < 1.5 * size, (peak, size)


def test_a_tokenizer_trained_offline_round_trips_text(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    model = tokenizers.models.WordLevel(unk_token="[UNK]")
    inner = tokenizers.Tokenizer(model)
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    inner.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    text = ["the cat sat on the mat", "a dog sat on a log", "the dog saw the cat"]
    inner.train_from_iterator(text, trainer)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    inner.save(str(folder / "tokenizer.json"))
    for tok in (
        decoding.Tokenizer.from_file(folder / "tokenizer.json"),
        decoding.load_tokenizer(folder),
    ):
        ids = tok.encode("the dog sat on the mat")
        assert len(ids) == 6 and all(isinstance(i, int) for i in ids)
        assert tok.decode(ids) == "the dog sat on the mat"
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        decoding.load_tokenizer(tmp_path)


def test_weights_need_numpy_alone_and_tokenizers_name_the_install(tmp_path, monkeypatch):
    """Safetensors files are read with NumPy: no optional package is needed for the weights;
    the tokenizer needs ``tokenizers`` and says how to install it."""
    write_gpt2(tmp_path / "g", np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert decoding.load_model(tmp_path / "g").vocab_size == 40
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[hf\]'"):
        decoding.Tokenizer.from_file(tmp_path / "tokenizer.json")


# -- the command line with a checkpoint ----------------------------------------------------------


# -- safetensors files: dtypes, layouts, malformed headers ----------------------------------------


def write_raw_safetensors(path, entries, pad=True):
    """A safetensors file written by hand (``entries``: name -> (dtype, shape, raw bytes)), the
    format's way: an 8-byte little-endian header length, the JSON header, the data."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-(8 + len(text)) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def bf16(values):
    """float64 values -> (bfloat16 bit patterns, the float32 values they encode): the top 16
    bits of each float32, i.e. rounded towards zero."""
    bits = (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bfloat16_and_float16_checkpoints_load_exactly(tmp_path, dtype):
    """Every weight is the stored half-precision value, widened exactly: a bfloat16 file is
    written by hand here (the NumPy API of safetensors cannot), a float16 one by safetensors."""
    rng = np.random.default_rng(31)
    tensors = write_llama(tmp_path / "f32", rng, dtype=np.float32)
    config = (tmp_path / "f32" / "config.json").read_text()
    for name in ("bf16", "f16"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(config)
    entries, exact_bf16 = {}, {}
    for name, value in tensors.items():
        bits, exact_bf16[name] = bf16(value)
        entries[name] = ("BF16", value.shape, bits.tobytes())
    write_raw_safetensors(tmp_path / "bf16" / "model.safetensors", entries)
    exact_f16 = {k: v.astype(np.float16) for k, v in tensors.items()}
    safetensors_numpy.save_file(exact_f16, str(tmp_path / "f16" / "model.safetensors"))
    for name, exact in (("bf16", exact_bf16), ("f16", exact_f16)):
        model = decoding.load_model(tmp_path / name, dtype=dtype)
        block = model.weights.blocks[1]
        q = exact["model.layers.1.self_attn.q_proj.weight"].astype(dtype)
        np.testing.assert_array_equal(block.q_w_DX, q.T)
        np.testing.assert_array_equal(
            model.weights.embed_VD, exact["model.embed_tokens.weight"].astype(dtype)
        )
        np.testing.assert_array_equal(
            model.weights.head_DV, exact["lm_head.weight"].astype(dtype).T
        )
        assert block.q_w_DX.dtype == np.dtype(dtype)
        # The same values from a float64 file: the same model.
        same = tmp_path / f"{name}-as-f64-{dtype}"
        same.mkdir()
        (same / "config.json").write_text(config)
        safetensors_numpy.save_file({k: v.astype(np.float64) for k, v in exact.items()},
                                    str(same / "model.safetensors"))  # fmt: skip
        np.testing.assert_array_equal(
            model.next_token_logits([(1, 2, 3)]),
            decoding.load_model(same, dtype=dtype).next_token_logits([(1, 2, 3)]),
        )


def test_weights_in_the_model_dtype_and_layout_stay_in_the_mapped_file(tmp_path):
    """A float32 Llama checkpoint loaded as float32: the linear weights are read-only views of
    the file (no copy); the tied head's [D, V] layout and float64 are copies."""
    tensors = write_llama(tmp_path / "m", np.random.default_rng(32), dtype=np.float32)
    model = decoding.load_model(tmp_path / "m", dtype="float32")
    q = model.weights.blocks[0].q_w_DX
    base = q
    while isinstance(base.base, np.ndarray):
        base = base.base
    assert not base.flags.owndata and not q.flags.writeable
    assert isinstance(base.base, memoryview) and isinstance(base.base.obj, mmap.mmap)
    np.testing.assert_array_equal(
        q, tensors["model.layers.0.self_attn.q_proj.weight"].astype(np.float32).T
    )
    copy = decoding.load_model(tmp_path / "m", dtype="float64").weights.blocks[0].q_w_DX
    base = copy
    while isinstance(base.base, np.ndarray):
        base = base.base
    assert copy.T.flags.c_contiguous and base.flags.owndata  # a float64 array of its own


def test_unaligned_and_unpadded_files_load_too(tmp_path):
    """A header not padded to 8 bytes leaves float32 data unaligned: it is copied, not viewed."""
    tensors = write_llama(tmp_path / "m", np.random.default_rng(33), dtype=np.float32)
    entries = {k: ("F32", v.shape, v.astype(np.float32).tobytes()) for k, v in tensors.items()}
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "config.json").write_text((tmp_path / "m" / "config.json").read_text())
    for pad in (False, True):
        write_raw_safetensors(folder / "model.safetensors", entries, pad=pad)
        np.testing.assert_array_equal(
            decoding.load_model(folder).next_token_logits([(1, 2)]),
            decoding.load_model(tmp_path / "m").next_token_logits([(1, 2)]),
        )


def test_malformed_safetensors_files_are_refused_naming_the_file_and_tensor(tmp_path):
    write_llama(tmp_path / "m", np.random.default_rng(34))
    path = tmp_path / "m" / "model.safetensors"
    raw = 3 * np.ones(4, np.int8)
    cases = [
        (b"abc", "is not a safetensors file (only 3 bytes)"),
        ((10**9).to_bytes(8, "little") + b"{}", "is not a safetensors file (header length"),
        ((4).to_bytes(8, "little") + b"[1] ", "its header is not a JSON object"),
        ((3).to_bytes(8, "little") + b"{x}", "its header is not valid JSON: Expecting"),
    ]
    for content, words in cases:
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            decoding.load_model(tmp_path / "m")
        assert str(info.value).startswith(str(path)) and words in str(info.value), info.value
    write_raw_safetensors(path, {"model.norm.weight": ("I8", (4,), raw.tobytes())})
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == (
        f"{path}: tensor 'model.norm.weight' has dtype 'I8', which is not supported "
        "(supported: F64, F32, F16, BF16)"
    )
    write_raw_safetensors(path, {"model.norm.weight": ("F32", (4,), raw.tobytes())})
    with pytest.raises(ValueError, match=r"tensor 'model.norm.weight' has a malformed entry"):
        decoding.load_model(tmp_path / "m")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:-2]))
    write_raw_safetensors(path, {"model.norm.weight": ("F32", (1,), b"\x00" * 4)})
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="lies past the end of the file"):
        decoding.load_model(tmp_path / "m")
