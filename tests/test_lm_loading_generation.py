"""`load_generation_config` (`decoding.lm.loading.generation`): the EOS ids and sampling
defaults a folder or a GGUF file states, and where each comes from.
"""

from __future__ import annotations

import json

import pytest

import decoding

from checkpoints import folder_with, write_gguf_tokenizer

# -- worked cases ----------------------------------------------------------------------------------


def test_generation_settings_of_a_gguf(tmp_path, trained):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2")
    config = decoding.load_generation_config(path)
    vocab = trained.get_vocab()
    assert config == decoding.GenerationConfig(
        eos_token_ids=(vocab["<|im_end|>"], vocab["</s>"]),  # EOS, then end of turn
        bos_token_id=vocab["<s>"],
        pad_token_id=vocab["<|endoftext|>"],
        temperature=pytest.approx(0.7),
        top_k=40,
    )


@pytest.mark.parametrize(
    ("generation", "config", "tokenizer_config", "want"),
    [
        ({"eos_token_id": [5, 6]}, {"eos_token_id": 2}, {"eos_token": "</s>"}, (5, 6)),
        ({"eos_token_id": 7}, {"eos_token_id": [2, 3]}, None, (7,)),
        ({"temperature": 0.6}, {"eos_token_id": [2, 3]}, None, (2, 3)),
        (None, {}, {"eos_token": "</s>"}, ("</s>",)),
        (None, {}, None, ()),
    ],
)
def test_eos_ids_come_from_generation_config_then_config_then_the_tokenizer(
    tmp_path, trained, generation, config, tokenizer_config, want
):
    folder = folder_with(tmp_path, trained, tokenizer_config)
    (folder / "config.json").write_text(json.dumps(config | {"bos_token_id": 1}))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    got = decoding.load_generation_config(folder)
    assert got.eos_token_ids == tuple(
        trained.token_to_id(w) if isinstance(w, str) else w for w in want
    )
    assert got.bos_token_id == 1


def test_sampling_defaults_are_read_and_absent_ones_are_none(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 2, "pad_token_id": 0}))
    settings = {"temperature": 0.6, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.1,
                "max_new_tokens": 256, "bos_token_id": 1}  # fmt: skip
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    got = decoding.load_generation_config(tmp_path)
    assert got == decoding.GenerationConfig((2,), 1, 0, 0.6, 50, 0.9, 1.1, 256)
    (tmp_path / "generation_config.json").unlink()
    assert decoding.load_generation_config(tmp_path) == decoding.GenerationConfig((2,), None, 0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        decoding.load_generation_config(tmp_path / "absent")
    with pytest.raises(TypeError, match="path must be a str or Path, got 3"):
        decoding.load_generation_config(3)


def write_gguf_settings(path, eos=None, eot=None, eom=None, **sampling):
    """A GGUF file holding only these ids and ``general.sampling.*`` settings."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    for name, value in (("eos", eos), ("eot", eot), ("eom", eom)):
        if value is not None:
            getattr(writer, f"add_{name}_token_id")(value)
    for name, value in sampling.items():
        getattr(writer, f"add_sampling_{name}")(value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_ends_at_eos_then_end_of_turn_then_end_of_message_and_reads_every_sampling_key(
    tmp_path,
):
    """llama.cpp stops on the EOS, EOT and EOM ids (in that order, each once); the four
    ``general.sampling`` keys are temp, top_k, top_p and penalty_repeat (binary fractions:
    exact in float32)."""
    path = write_gguf_settings(
        tmp_path / "s.gguf", eos=2, eot=7, eom=8, temp=0.5, top_k=40, top_p=0.75,
        penalty_repeat=1.25,
    )  # fmt: skip
    got = decoding.load_generation_config(path)
    assert got == decoding.GenerationConfig(
        eos_token_ids=(2, 7, 8), temperature=0.5, top_k=40, top_p=0.75, repetition_penalty=1.25
    )
    assert type(got.top_k) is int and type(got.temperature) is float
    path = write_gguf_settings(tmp_path / "e.gguf", eos=2, eot=2, eom=9)
    assert decoding.load_generation_config(path).eos_token_ids == (2, 9)


def test_a_gguf_sampling_value_that_is_not_finite_is_refused_naming_the_file_and_key(tmp_path):
    path = write_gguf_settings(tmp_path / "nan.gguf", eos=2, top_p=float("inf"))
    with pytest.raises(ValueError) as info:
        decoding.load_generation_config(path)
    assert str(info.value) == f"{path}: general.sampling.top_p must be a finite number, got inf"


def test_an_integer_setting_that_is_not_a_whole_number_is_none_and_a_whole_one_stays_an_int(
    tmp_path,
):
    """top_k and max_new_tokens are counts: 40.5 is no count, so it is dropped (None), while
    the float settings take an int as a float (1 -> 1.0). A folder with no config.json reads
    generation_config.json alone."""
    settings = {"temperature": 1, "top_k": 40.5, "top_p": 1, "repetition_penalty": 2,
                "max_new_tokens": 64.5, "eos_token_id": 5}  # fmt: skip
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    got = decoding.load_generation_config(tmp_path)
    assert got == decoding.GenerationConfig((5,), None, None, 1.0, None, 1.0, 2.0, None)
    settings.update(top_k=40, max_new_tokens=64)
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    got = decoding.load_generation_config(tmp_path)
    assert (got.top_k, got.max_new_tokens) == (40, 64)
    assert type(got.top_k) is int and type(got.max_new_tokens) is int


# --- a path with nothing there ---


def test_generation_config_of_a_missing_path_says_checkpoint_does_not_exist(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_generation_config(missing)
    assert str(info.value) == f"checkpoint {missing} does not exist"
