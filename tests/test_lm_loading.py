"""`load_model` (`decoding.lm.loading`) on checkpoint folders written here with HF key names
(no torch): cached and batched paths against the model's own full recompute, the weights
round-tripped bit for bit, only the model's dtype held, and the checkpoints it refuses.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np
import pytest

import decoding

from checkpoints import llama_config, llama_tensors, save, write_gpt2, write_llama

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


class Recompute(decoding.LanguageModel):
    """Only next_token_logits: the decoder's default path, full recompute each step."""

    def __init__(self, inner):
        self.inner, self.vocab_size = inner, inner.vocab_size

    def next_token_logits(self, sequences):
        return self.inner.next_token_logits([tuple(s) for s in sequences])


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


# -- worked cases ----------------------------------------------------------------------------------


def test_a_float64_checkpoint_loaded_as_float32_is_converted_tensor_by_tensor(tmp_path):
    """Every tensor is converted to the model dtype as it is read: the peak traced memory stays
    under 1.5x the float32 weights, though the file holds twice that in float64."""
    tensors = llama_tensors(np.random.default_rng(17), vocab=64, d=64, layers=4, heads=4, kv=2,
                            ff=192)  # fmt: skip
    folder = save(tmp_path, llama_config(vocab=64, d=64, layers=4, ff=192), tensors)
    size = sum(t.size for t in tensors.values()) * 4
    tracemalloc.start()
    model = decoding.load_model(folder, dtype="float32")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert model.weights.blocks[0].q_w_DX.dtype == np.float32
    assert peak < 1.5 * size, (peak, size)


def test_weights_need_numpy_alone_and_tokenizers_name_the_install(tmp_path, monkeypatch):
    """Safetensors files are read with NumPy: no optional package is needed for the weights;
    the tokenizer needs ``tokenizers`` and says how to install it."""
    write_gpt2(tmp_path / "g", np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert decoding.load_model(tmp_path / "g").vocab_size == 40
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[hf\]'"):
        decoding.Tokenizer.from_file(tmp_path / "tokenizer.json")


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


# -- errors ----------------------------------------------------------------------------------------


def test_a_config_that_is_not_an_object_is_refused_naming_the_file(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == f"{tmp_path / 'config.json'} must hold a JSON object, not list"


def test_an_unknown_model_type_is_refused_listing_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == (
        f"unsupported model_type 'bert' in {tmp_path / 'config.json'}; "
        "supported: gpt2, llama, mistral, qwen2"
    )


def test_a_bad_dtype_is_refused_naming_the_argument(tmp_path):
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path, dtype="int32")
    assert str(info.value) == "dtype must be float32 or float64, got 'int32'"


def test_every_malformed_checkpoint_is_refused_by_name(tmp_path):
    for folder, error, words in malformed(tmp_path, np.random.default_rng(0)):
        with pytest.raises(error) as info:
            decoding.load_model(folder)
        assert all(w in str(info.value) for w in words), (folder.name, str(info.value))


def test_bad_dtype_is_refused_before_reading(tmp_path):
    with pytest.raises((TypeError, ValueError), match="dtype"):
        decoding.load_model(tmp_path, dtype="int32")


def test_read_json_takes_a_file_of_exactly_its_limit_and_names_the_limit_past_it(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"a": 1}')  # 8 bytes
    assert decoding.lm.loading.read_json(path, 8, "LIMIT") == {"a": 1}
    path.write_text('{"a": 10}')  # 9 bytes
    with pytest.raises(ValueError) as info:
        decoding.lm.loading.read_json(path, 8, "LIMIT")
    assert str(info.value) == f"{path} is larger than decoding.lm.loading.LIMIT = 8 bytes"


def test_a_folder_whose_name_ends_in_a_space_holds_its_own_files(tmp_path):
    """The folder test compares resolved paths with the folder's path and a separator; only
    separators are trimmed from the folder's end, not the space in its name."""
    write_llama(tmp_path / "model ", np.random.default_rng(35))
    write_llama(tmp_path / "model", np.random.default_rng(35))
    np.testing.assert_array_equal(
        decoding.load_model(tmp_path / "model ").next_token_logits([(1, 2)]),
        decoding.load_model(tmp_path / "model").next_token_logits([(1, 2)]),
    )


def test_a_config_linked_outside_its_folder_is_refused_naming_both_and_the_folder(tmp_path):
    folder = tmp_path / "m"
    write_llama(folder, np.random.default_rng(36))
    outside = tmp_path / "elsewhere.json"
    outside.write_text((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        f"{folder / 'config.json'} resolves to {outside}, outside the checkpoint folder {folder}"
    )


# --- open_file's refusals, through read_json and load_model: each message names the path ---


def test_read_json_names_a_missing_file_a_dangling_link_and_a_folder(tmp_path):
    from decoding.lm.loading import read_json

    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError) as info:
        read_json(missing)
    assert str(info.value) == f"{missing} does not exist"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(FileNotFoundError) as info:
        read_json(dangling)
    assert str(info.value) == f"{dangling} is a symbolic link to nothing"
    folder = tmp_path / "config.json"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        read_json(folder)
    assert str(info.value) == f"{folder} is a folder, not a file"


def test_load_model_of_a_folder_without_config_json_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == f"{tmp_path} has no config.json"
