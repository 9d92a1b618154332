"""Safetensors files (`decoding.lm.loading.safetensors_files`) read with NumPy alone: float16
and bfloat16 exactly, sharded checkpoints, tensors already in the model's dtype and layout left
in the mapped file, unaligned files, and the malformed files refused naming file and tensor.
"""

from __future__ import annotations

import json
import mmap
import os

import attrs
import numpy as np
import pytest

import decoding

from checkpoints import llama_config, llama_tensors, save, write_gpt2, write_llama

safetensors_numpy = pytest.importorskip("safetensors.numpy")


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


# -- worked cases ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("stored", "dtype"), [(np.float64, "float32"), (np.float32, "float64")])
def test_a_gpt2_holds_every_weight_in_the_dtype_asked_for(tmp_path, stored, dtype):
    """GPT-2 keeps the loaded arrays themselves: the norms and biases (1-D, copied from the
    file) are converted to the model's dtype like the matrices, whatever the file holds."""
    tensors = write_gpt2(tmp_path / "float64", np.random.default_rng(35), layers=1)
    folder = save(tmp_path / "m", json.loads((tmp_path / "float64" / "config.json").read_text()),
                  {k: v.astype(stored) for k, v in tensors.items()})  # fmt: skip
    weights = decoding.load_model(folder, dtype=dtype).weights
    arrays = [weights.wte_VD, weights.wpe_PD, weights.lnf_g_D, weights.lnf_b_D]
    arrays += [getattr(weights.blocks[0], f.name) for f in attrs.fields(type(weights.blocks[0]))]
    assert {a.dtype for a in arrays} == {np.dtype(dtype)}
    np.testing.assert_array_equal(
        weights.blocks[0].ln2_b_D,
        tensors["transformer.h.0.ln_2.bias"].astype(stored).astype(dtype),
    )


def resident_kib(path):
    """Kibibytes of ``path``'s mapped pages this process holds (its ``Rss`` in
    /proc/self/smaps, over every mapping of the file)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if not head.endswith(":"):  # a mapping's first line: address range ... path
                inside = line.rstrip().endswith(str(path))
            elif inside and head == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(
    not hasattr(mmap, "MADV_DONTNEED") or not os.path.exists("/proc/self/smaps"),
    reason="pages are handed back with madvise; resident pages are read from /proc/self/smaps",
)
def test_the_file_pages_a_conversion_read_are_handed_back(tmp_path):
    """A tied float32 Llama: the head's [D, V] copy of the 4 MiB embedding is built chunk by
    chunk from the mapped file, and each chunk's pages are dropped once copied. The file stays
    mapped (the other weights are views of it), but holds almost none of its pages."""
    write_llama(tmp_path / "m", np.random.default_rng(34), vocab=8192, d=128, layers=1,
                tied=True, dtype=np.float32)  # fmt: skip
    model = decoding.load_model(tmp_path / "m", dtype="float32")
    assert model.weights.head_DV is None and model.weights.embed_VD.nbytes == 4 << 20
    resident = resident_kib(tmp_path / "m" / "model.safetensors")
    assert 0 < resident < 2048  # half the embedding: its pages are not held


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


# -- errors ----------------------------------------------------------------------------------------


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


def sharded_index(folder, shards, weight_map):
    """A Llama checkpoint's config in ``folder`` with shards ``name -> tensor names`` (a float32
    scalar each) and an index of ``weight_map``; returns the index's path."""
    save(folder, llama_config(), llama_tensors(np.random.default_rng(0)))
    (folder / "model.safetensors").unlink()
    for shard, names in shards.items():
        tensors = {name: np.zeros(1, np.float32) for name in names}
        safetensors_numpy.save_file(tensors, str(folder / shard))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index


@pytest.mark.parametrize(
    ("shards", "weight_map", "message"),
    [
        pytest.param(
            {"a.st": ["x"]},
            "a.st",
            "{index} is not a safetensors index: its weight_map must be a JSON object (tensor "
            "name -> shard file), got 'a.st'",
            id="weight_map a string",
        ),
        pytest.param(
            {"a.st": ["x"]},
            {"x": "a.st", "y": 3},
            "{index}: the shard of tensor 'y' must be a file name, got 3",
            id="shard an int",
        ),
        pytest.param(
            {"a.st": ["x"], "b.st": ["y"]},
            {"x": "a.st", "y": "a.st"},
            "{index} lists tensor 'y' in shard 'a.st', which does not hold it",
            id="listed in the wrong shard",
        ),
        pytest.param(
            {"a.st": ["x", "y"]},
            {"x": "a.st"},
            "shard 'a.st' holds tensor 'y', but {index} does not list it",
            id="not listed",
        ),
        pytest.param(
            {"a.st": ["x", "y"], "b.st": ["y"]},
            {"x": "a.st", "y": "b.st"},
            "shard 'a.st' holds tensor 'y', but {index} lists it in 'b.st'",
            id="held by two shards",
        ),
    ],
)
def test_a_safetensors_index_that_does_not_match_its_shards_is_refused_by_name(
    tmp_path, shards, weight_map, message
):
    index = sharded_index(tmp_path, shards, weight_map)
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == message.format(index=index)


def test_a_safetensors_index_without_a_weight_map_is_refused_naming_the_file(tmp_path):
    save(tmp_path, llama_config(), llama_tensors(np.random.default_rng(0)))
    (tmp_path / "model.safetensors").unlink()
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == (
        f"{index} is not a safetensors index: its weight_map must be a JSON object (tensor "
        "name -> shard file), got None"
    )


def write_header(path, header, data):
    """A safetensors file of this ``header`` (a dict, offsets as given) and ``data`` bytes."""
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_a_header_length_past_the_end_of_the_file_is_refused_with_both_sizes(tmp_path):
    """Ten bytes: the 8-byte length says 3, but only 2 header bytes follow."""
    write_llama(tmp_path / "m", np.random.default_rng(37))
    path = tmp_path / "m" / "model.safetensors"
    path.write_bytes((3).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == (
        f"{path} is not a safetensors file (header length 3, but the file has 10 bytes)"
    )


def test_tensors_sharing_bytes_are_refused_naming_both(tmp_path):
    """'a' is float32 bytes [0, 8), 'b' float32 bytes [4, 12): they share bytes 4 to 7."""
    write_llama(tmp_path / "m", np.random.default_rng(38))
    path = tmp_path / "m" / "model.safetensors"
    header = {
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    write_header(path, header, bytes(12))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == f"{path}: tensors 'a' and 'b' overlap in the file"


def test_an_empty_tensor_inside_another_shares_no_byte(tmp_path):
    """'b' has no elements and begins inside 'a': the header is sound, so loading goes on
    until the model asks for its first tensor (the first layer's norm)."""
    write_llama(tmp_path / "m", np.random.default_rng(39))
    path = tmp_path / "m" / "model.safetensors"
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
    }
    write_header(path, header, bytes(8))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == f"{path} is missing tensor 'model.layers.0.input_layernorm.weight'"


def test_a_file_with_metadata_loads_as_without(tmp_path):
    """Files saved by torch carry ``__metadata__`` (``{"format": "pt"}``): not a tensor."""
    tensors = write_llama(tmp_path / "m", np.random.default_rng(40), dtype=np.float32)
    want = decoding.load_model(tmp_path / "m").next_token_logits([(1, 2)])
    path = str(tmp_path / "m" / "model.safetensors")
    safetensors_numpy.save_file(tensors, path, metadata={"format": "pt"})
    assert b'"__metadata__"' in (tmp_path / "m" / "model.safetensors").read_bytes()[:4096]
    np.testing.assert_array_equal(
        decoding.load_model(tmp_path / "m").next_token_logits([(1, 2)]), want
    )


def test_a_sharded_checkpoint_names_its_index_for_a_missing_tensor(tmp_path):
    index = sharded_index(tmp_path, {"a.st": ["x"]}, {"x": "a.st"})
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == f"{index} is missing tensor 'model.layers.0.input_layernorm.weight'"


def test_a_folder_without_weights_is_refused_naming_both_file_names(tmp_path):
    write_llama(tmp_path, np.random.default_rng(41))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} has neither model.safetensors nor model.safetensors.index.json"
    )


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}, id="int shape"),
        pytest.param({"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}, id="3 offsets"),
        pytest.param({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, id="too few bytes"),
    ],
)
def test_a_malformed_entry_is_refused_quoting_it_whole(tmp_path, entry):
    """Each entry is refused as malformed, the message quoting the file, the tensor's name and
    the entry as given (not a TypeError or an unpacking error from a later step)."""
    write_llama(tmp_path / "m", np.random.default_rng(38))
    path = tmp_path / "m" / "model.safetensors"
    write_header(path, {"model.norm.weight": entry}, b"\x00" * 16)
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == (
        f"{path}: tensor 'model.norm.weight' has a malformed entry {entry!r}"
    )


def test_a_tensor_past_the_end_of_the_file_is_refused_by_name(tmp_path):
    """Offsets 0..16 of a float32[4], but only 12 data bytes follow the header."""
    write_llama(tmp_path / "m", np.random.default_rng(39))
    path = tmp_path / "m" / "model.safetensors"
    entry = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    write_header(path, {"model.norm.weight": entry}, b"\x00" * 12)
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == f"{path}: tensor 'model.norm.weight' lies past the end of the file"


def test_an_eight_byte_file_is_read_as_an_empty_header(tmp_path):
    """Eight bytes are a whole length field (0): the file is refused for its empty header, not
    for being too short."""
    write_llama(tmp_path / "m", np.random.default_rng(40))
    path = tmp_path / "m" / "model.safetensors"
    path.write_bytes((0).to_bytes(8, "little"))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value).startswith(
        f"{path} is not a safetensors file: its header is not valid JSON"
    ), info.value


def test_a_header_of_exactly_the_limit_is_read(tmp_path, monkeypatch):
    """MAX_SAFETENSORS_HEADER_BYTES is the largest header length read: at the header's own
    length the model loads; one byte less and it is refused naming both numbers."""
    write_llama(tmp_path / "m", np.random.default_rng(41))
    path = tmp_path / "m" / "model.safetensors"
    length = int.from_bytes(path.read_bytes()[:8], "little")
    files = decoding.lm.loading.safetensors_files
    monkeypatch.setattr(files, "MAX_SAFETENSORS_HEADER_BYTES", length)
    assert decoding.load_model(tmp_path / "m").vocab_size == 40
    monkeypatch.setattr(files, "MAX_SAFETENSORS_HEADER_BYTES", length - 1)
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path / "m")
    assert str(info.value) == (
        f"{path} is not a safetensors file (header length {length} is more than "
        f"decoding.lm.loading.MAX_SAFETENSORS_HEADER_BYTES = {length - 1})"
    )
