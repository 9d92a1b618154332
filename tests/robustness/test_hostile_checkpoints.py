"""Hostile checkpoints (`hostile_files`) through the loaders: every one is refused at once with
a `ValueError` or `OSError` (the case's type) whose one-line message names the file and the
problem, under 400 characters; nothing hangs (a FIFO is never opened), nothing is read
outside the checkpoint folder, nothing is read past its documented cap, and the traced memory
of any refusal stays small. The good folder and GGUF they are made from load.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import struct
import sys
import tracemalloc

import numpy as np
import pytest

import decoding
from decoding import Tokenizer

from .hostile_files import (
    WORDS,
    float_entries,
    gguf_bytes,
    gguf_metadata,
    gguf_string,
    good_folder,
    kv,
    kv_u32,
    llama_tensors,
    rewrite_json,
    safetensors_bytes,
)

pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")

LOADERS = {
    "model": decoding.load_model,
    "tokenizer": decoding.load_tokenizer,
    "generation": decoding.load_generation_config,
}
SECONDS = 20  # a case that takes longer has hung (each takes milliseconds)
MEMORY = 64 << 20  # traced bytes a refusal may allocate


@pytest.fixture
def deadline():
    """Fail, rather than hang, a call that blocks (on a FIFO) for SECONDS."""

    def hung(signum, frame):
        raise TimeoutError(f"hung for {SECONDS} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_the_good_folder_and_gguf_load(tmp_path):
    """The control: the files every case breaks load and decode."""
    folder = good_folder(tmp_path / "good")
    model = decoding.load_model(folder)
    tokenizer = decoding.load_tokenizer(folder)
    assert decoding.load_generation_config(folder).eos_token_ids == (1,)
    prompt = tokenizer.encode("the cat sat")
    assert prompt == [WORDS.index(w) for w in ("the", "cat", "sat")]
    beams = decoding.BeamSearchDecoder(2, 3, eos_token_id=1).decode(model, [prompt])[0]
    assert all(isinstance(tokenizer.decode(b.tokens), str) for b in beams)
    (tmp_path / "good.gguf").write_bytes(gguf_bytes())
    gguf = decoding.load_model(tmp_path / "good.gguf")
    assert gguf.vocab_size == len(WORDS)
    # The same tensors, written by hand in both formats.
    np.testing.assert_array_equal(gguf.weights.embed_VD, model.weights.embed_VD)
    assert decoding.load_tokenizer(tmp_path / "good.gguf").encode("ab") == [11]
    assert decoding.load_generation_config(tmp_path / "good.gguf").eos_token_ids == (1,)


def test_a_version_2_gguf_and_one_named_otherwise_load(tmp_path):
    """GGUF versions 2 and 3 read alike; a file not named .gguf is a GGUF by its magic."""
    good = decoding.load_model(_written(tmp_path / "good.gguf", gguf_bytes()))
    old = decoding.load_model(_written(tmp_path / "v2.gguf", gguf_bytes(version=2)))
    np.testing.assert_array_equal(old.weights.embed_VD, good.weights.embed_VD)
    renamed = decoding.load_model(_written(tmp_path / "weights.bin", gguf_bytes()))
    np.testing.assert_array_equal(renamed.weights.embed_VD, good.weights.embed_VD)


def _written(path, data):
    path.write_bytes(data)
    return path


def _info(name, dims, offset, n_dims=None, ggml_type=0):
    """A tensor info as GGUF writes it (``n_dims`` may differ from ``len(dims)``)."""
    n_dims = len(dims) if n_dims is None else n_dims
    packed = b"".join(struct.pack("<Q", d) for d in dims)
    return (
        gguf_string(name)
        + struct.pack("<I", n_dims)
        + packed
        + struct.pack("<IQ", ggml_type, offset)
    )


def _one(target, **change):
    """A ``tensor_info`` that changes tensor ``target``'s info only."""
    return lambda name, dims, offset: _info(
        name, dims, offset, **(change if name == target else {})
    )


def test_malformed_gguf_headers_are_refused_with_what_is_wrong(tmp_path):
    """Each header fault is named exactly: counts (past the cap, by what they count),
    repeated keys and tensors, types and sizes read unsigned, the alignment."""
    cap = decoding.lm.loading.MAX_GGUF_ITEMS
    norm = "output_norm.weight"
    u32 = 2**32 - 1
    cases = [
        (gguf_bytes(tensor_count=cap + 1),
         f"tensor count {cap + 1} takes it past decoding.lm.loading.MAX_GGUF_ITEMS = {cap} items"),
        (gguf_bytes(kv_count=cap + 1),
         f"metadata entry count {cap + 1} takes it past "
         f"decoding.lm.loading.MAX_GGUF_ITEMS = {cap} items"),
        (gguf_bytes([*gguf_metadata(), kv_u32("general.architecture", 1)]),
         "metadata key 'general.architecture' appears twice"),
        (gguf_bytes([*gguf_metadata(), kv("general.x", u32, b"")]),
         f"unknown metadata value type {u32}"),
        (gguf_bytes(tensor_info=_one(norm, n_dims=u32)),
         f"tensor '{norm}' has {u32} dimensions (ggml allows 4)"),
        (gguf_bytes(tensor_info=lambda name, dims, offset: _info(norm, dims, offset)),
         f"tensor '{norm}' appears twice"),
        (gguf_bytes(tensor_info=lambda name, dims, offset: _info(
            name, () if name == norm else dims, offset)), f"tensor '{norm}' has dimensions ()"),
        (gguf_bytes(tensor_info=lambda name, dims, offset: _info(
            name, (2**64 - 1,) if name == norm else dims, offset)),
         f"tensor '{norm}' lies past the end of the file"),
        (gguf_bytes([*gguf_metadata(), kv_u32("general.alignment", 3)]),
         "general.alignment is 3, not a power of 2"),
    ]  # fmt: skip
    for i, (data, message) in enumerate(cases):
        path = _written(tmp_path / f"{i}.gguf", data)
        with pytest.raises(ValueError) as info:
            decoding.load_model(path)
        assert str(info.value) == f"{path} is not a readable GGUF file: {message}", i
    path = _written(tmp_path / "type.gguf", gguf_bytes(tensor_info=_one(norm, ggml_type=u32)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(path)
    assert str(info.value).startswith(f"{path}: tensor '{norm}' has type type {u32}, which is")


def test_a_gguf_tensor_may_have_four_dimensions_and_an_alignment_of_1(tmp_path):
    """ggml allows 4 dimensions; with ``general.alignment`` 1 the data starts right after the
    header, where the first tensor is."""
    from decoding.lm.loading.gguf_files import GGUFFile

    infos = []

    def record(name, dims, offset):
        infos.append(
            _info(name, (*dims, 1, 1)[:4] if name == "token_embd.weight" else dims, offset)
        )
        return infos[-1]

    metadata = [*gguf_metadata(), kv_u32("general.alignment", 1)]
    path = _written(tmp_path / "m.gguf", gguf_bytes(metadata, tensor_info=record))
    header = 4 + 4 + 8 + 8 + sum(map(len, metadata)) + sum(map(len, infos))
    file = GGUFFile(path)
    first = file.tensors["token_embd.weight"]
    assert first.offset == header
    assert len(first.dims) == 4
    assert first.shape[:2] == (1, 1)


def test_there_are_at_least_190_cases(hostile_cases):
    table = hostile_cases
    calls = sum(len(case[1]) for case in table.values())
    assert len(table) >= 190 and calls >= 250, (len(table), calls)


def test_every_hostile_case_is_a_named_error_without_hang_or_big_allocation(
    hostile_cases, deadline
):
    """All cases in one test (their folders are built once): each call raises the case's error
    type, a ValueError or OSError, with a one-line message under 400 characters holding the
    case's words; traced memory stays under 64 MiB per call."""
    table = hostile_cases
    failures = []
    worst = 0
    for name, (path, loaders, error, words) in table.items():
        for loader in loaders:
            tracemalloc.start()
            try:
                LOADERS[loader](path)
            except (ValueError, OSError) as raised:
                message = str(raised)
                problems = [
                    f"type {type(raised).__name__}" * (not isinstance(raised, error)),
                    "several lines" * ("\n" in message),
                    f"{len(message)} characters" * (len(message) >= 400),
                    *(f"no {w!r}" for w in words if w.lower() not in message.lower()),
                ]
                if any(problems):
                    failures.append(f"{name} [{loader}]: {[p for p in problems if p]}: {message}")
            except Exception as raised:  # noqa: BLE001 - the point is to list them all
                failures.append(f"{name} [{loader}]: {type(raised).__name__}: {raised}"[:300])
            else:
                failures.append(f"{name} [{loader}]: accepted")
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            worst = max(worst, peak)
            if peak > MEMORY:
                failures.append(f"{name} [{loader}]: traced {peak} bytes")
    assert not failures, "\n".join(failures)
    assert worst < MEMORY


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("../x.safetensors", "is not a file inside the checkpoint folder"),
        ("/abs/x.safetensors", "is not a file inside the checkpoint folder"),
        ("../../../etc/passwd", "is not a file inside the checkpoint folder"),
        ("a/../../x.safetensors", "is not a file inside the checkpoint folder"),
        # A backslash is a separator too (Windows' spelling), wherever the entry is read.
        ("..\\x.safetensors", "is not a file inside the checkpoint folder"),
        ("a\\..\\..\\x.safetensors", "is not a file inside the checkpoint folder"),
        ("\\x.safetensors", "is not a file inside the checkpoint folder"),
    ],
)
def test_an_index_entry_outside_the_folder_is_refused_naming_the_entry(tmp_path, entry, expected):
    folder = good_folder(tmp_path / "m")
    (folder / "model.safetensors").rename(tmp_path / "x.safetensors")
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"model.norm.weight": entry}}))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == f"{index}: shard {entry!r} {expected}"


@pytest.mark.parametrize(
    ("entry", "error", "expected"),
    [
        ("", ValueError, "is not a file name"),
        ("   ", ValueError, "is not a file name"),
        ("./", ValueError, "is not a file name"),
        ("x.safetensors", FileNotFoundError, "is missing"),
    ],
)
def test_an_index_entry_that_names_no_file_is_refused_naming_the_entry(
    tmp_path, entry, error, expected
):
    folder = good_folder(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"model.norm.weight": entry}}))
    with pytest.raises(error) as info:
        decoding.load_model(folder)
    assert str(info.value) == f"{index}: shard {entry!r} {expected}"


def test_links_inside_the_folder_and_to_a_hub_cache_blob_are_followed(tmp_path):
    """A link to a file inside the folder is fine, and so is HF's hub cache layout:
    ``snapshots/<revision>/*`` are links to ``../../blobs/<hash>``."""
    folder = good_folder(tmp_path / "m")
    (folder / "weights.bin").write_bytes((folder / "model.safetensors").read_bytes())
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("weights.bin")
    assert decoding.load_model(folder).vocab_size == len(WORDS)
    repo = tmp_path / "models--x--y"
    snapshot = repo / "snapshots" / "0123abc"
    good_folder(repo / "blobs-source")
    (repo / "blobs").mkdir()
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted((repo / "blobs-source").iterdir())):
        file.rename(repo / "blobs" / f"hash{i}")
        (snapshot / file.name).symlink_to(f"../../blobs/hash{i}")
    assert decoding.load_model(snapshot).vocab_size == len(WORDS)
    assert decoding.load_tokenizer(snapshot).encode("the cat") == [2, 3]
    assert decoding.load_generation_config(snapshot).eos_token_ids == (1,)
    (repo / "elsewhere.json").write_text("{}")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to("../../elsewhere.json")
    with pytest.raises(ValueError, match="outside the checkpoint folder"):
        decoding.load_model(snapshot)


def test_a_fifo_is_never_opened(tmp_path, monkeypatch, deadline):
    """The check comes before the open: with ``os.open`` refusing FIFOs outright, a FIFO
    config is still a named error, not whatever opening it would do."""
    folder = good_folder(tmp_path / "m")
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    opened = []
    real_open = os.open
    monkeypatch.setattr(
        os, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k)
    )
    with pytest.raises(ValueError, match="config.json is a FIFO, not a regular file"):
        decoding.load_model(folder)
    assert not any(str(p).endswith("config.json") for p in opened)


def test_permission_denied_says_so(tmp_path, monkeypatch):
    """An unreadable file or folder says "permission denied", not that the file is missing.
    (Simulated: chmod 000 does not stop root.)"""
    folder = good_folder(tmp_path / "m")
    real_open, real_stat = os.open, os.stat

    def denied_open(path, *args, **kwargs):
        if str(path).endswith("config.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied_open)
    with pytest.raises(PermissionError) as info:
        decoding.load_model(folder)
    assert str(info.value) == f"{folder / 'config.json'}: permission denied"
    monkeypatch.setattr(os, "open", real_open)

    def denied_stat(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied_stat)
    for load in LOADERS.values():
        with pytest.raises(PermissionError) as info:
            load(folder)
        assert str(info.value) == f"{folder}: permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod does not stop root")
def test_an_unreadable_file_says_permission_denied(tmp_path):
    folder = good_folder(tmp_path / "m")
    (folder / "config.json").chmod(0)
    with pytest.raises(PermissionError, match="config.json: permission denied"):
        decoding.load_model(folder)


@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_what_os_stat_refuses_is_named_by_path_and_in_words(load, tmp_path, monkeypatch):
    """The path, then what went wrong in lower case: a NUL byte (``os.stat`` raises a
    ValueError, "embedded null byte") or the OSError's own description."""
    monkeypatch.chdir(tmp_path)
    os.symlink("loop", "loop")
    with pytest.raises(ValueError) as info:
        load("a\0b")
    assert str(info.value) == "a\0b: a path cannot hold a NUL byte"
    with pytest.raises(OSError) as info:
        load("loop")
    assert str(info.value) == "loop: too many levels of symbolic links"


def test_an_os_error_without_a_description_is_named_by_its_type(tmp_path, monkeypatch):
    """(Simulated: ``os.stat`` always describes its errors.) The type's name is shown as it is
    spelled; only a description's first letter is lower-cased."""
    monkeypatch.chdir(tmp_path)
    real_stat = os.stat

    def undescribed_stat(path, *args, **kwargs):
        if str(path) == "model":
            raise OSError("no errno, no strerror")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", undescribed_stat)
    for load in LOADERS.values():
        with pytest.raises(OSError) as info:
            load("model")
        assert str(info.value) == "model: OSError"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll and /proc are Linux's")
@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_a_file_of_no_known_type_is_not_a_regular_file(load):
    """An epoll descriptor's ``/proc/self/fd`` link leads to an anonymous inode, whose mode has
    no file type: not a folder, a FIFO, a device or a socket, and not a regular file."""
    epoll = select.epoll()
    try:
        path = f"/proc/self/fd/{epoll.fileno()}"
        if stat.S_IFMT(os.stat(path).st_mode):
            pytest.skip("this kernel gives anonymous inodes a file type")
        with pytest.raises(ValueError) as info:
            load(path)
        assert str(info.value) == (
            f"{path} is neither a checkpoint folder nor a .gguf file"
            " (it is a file of no known type)"
        )
    finally:
        epoll.close()


@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
@pytest.mark.parametrize("path", [None, 3, b"folder", ["a"]], ids=repr)
def test_a_path_that_is_not_a_str_or_path_is_a_type_error_naming_path(load, path):
    with pytest.raises(TypeError) as info:
        load(path)
    assert str(info.value).startswith("path must be a str or Path, got ")


@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_a_2000_character_path_is_cut_in_the_message(load, tmp_path):
    path = tmp_path / "/".join(["d" * 199] * 10)
    with pytest.raises(FileNotFoundError) as info:
        load(path)
    message = str(info.value)
    assert len(message) < 400 and "does not exist" in message and "characters)" in message


# -- Tokenizer.decode ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return decoding.load_tokenizer(good_folder(tmp_path_factory.mktemp("tok") / "m"))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([1.7], "ids[0] must be an int token id, got 1.7"),
        ([2, True], "ids[1] must be an int token id, got True"),
        ([np.float64(2.0)], "ids[0] must be an int token id, got np.float64(2.0)"),
        ([np.bool_(True)], "ids[0] must be an int token id, got np.True_"),
        (np.array([1.0, 2.0]), "ids[0] must be an int token id, got np.float64(1.0)"),
        ("the", "ids must be a sequence of ints, got 'the'"),
        (None, "ids must be a sequence of ints, got None"),
        (3, "ids must be a sequence of ints, got 3"),
    ],
)
def test_decode_refuses_what_is_not_an_int_id_naming_ids(tokenizer, ids, message):
    with pytest.raises(TypeError) as info:
        tokenizer.decode(ids)
    assert str(info.value) == message


@pytest.mark.parametrize("bad", [-1, 12, 10**6, 2**32, 2**64, -(2**70)])
def test_decode_refuses_ids_the_tokenizer_has_no_token_for_naming_the_id(tokenizer, bad):
    with pytest.raises(ValueError) as info:
        tokenizer.decode([2, bad])
    assert str(info.value) == (
        f"ids[1] = {bad} is not a token id of this tokenizer (it has {len(WORDS)} tokens)"
    )
    assert tokenizer.id_to_token(bad) is None


def test_decode_refuses_a_gap_in_the_vocabulary_and_keeps_ids_past_the_count(tmp_path):
    """A vocabulary ``{a: 0, b: 5}`` has two tokens: 5 decodes, 3 is refused (the tokenizers
    package would drop it from the text)."""
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 5}, unk_token="a"))
    inner.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert tok.decode([5, 0]) == "b a"
    assert inner.decode([5, 3, 0]) == "b a"  # what the package alone does
    with pytest.raises(ValueError, match=r"ids\[1\] = 3 is not a token id"):
        tok.decode([5, 3, 0])


def test_the_cli_shows_ids_the_tokenizer_does_not_know(tmp_path, capsys):
    """A model's vocabulary can be larger than its tokenizer's: an id without a token shows as
    ``[unknown id N]`` in the printed text, not nothing (and not a traceback)."""
    from decoding.cli import main

    folder = good_folder(tmp_path / "m")
    tensors = llama_tensors()
    extra = np.full((1, tensors["model.embed_tokens.weight"].shape[1]), 0.1, np.float32)
    tensors["model.embed_tokens.weight"] = np.vstack([tensors["model.embed_tokens.weight"], extra])
    (folder / "model.safetensors").write_bytes(safetensors_bytes(float_entries(tensors)))
    rewrite_json(folder / "config.json", vocab_size=len(WORDS) + 1)
    argv = ["--model", str(folder), "--prompt", f"2 {len(WORDS)} 3", "--max-new-tokens", "1"]
    assert main([*argv, "--json", "--decoder", "greedy"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["results"][0]["prompt_text"] == f"the[unknown id {len(WORDS)}]cat"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
         "the chat template failed: RecursionError: maximum recursion depth exceeded"),
        ("{{ 1 / 0 }}", "the chat template failed: ZeroDivisionError: division by zero"),
        ("{{ strftime_now(3) }}", "the chat template failed: TypeError: strftime() argument 1"),
        ("{{ 'a' * 10 ** 15 }}", "the chat template failed: MemoryError"),
        ("{{" * 3000 + "1" + "}}" * 3000,
         "the chat template does not compile: RecursionError: maximum recursion depth"),
        ("{% if %}", "the chat template does not compile: Expected an expression"),
        ("{{ raise_exception('no system role') }}",
         "the chat template refused the messages: no system role"),
    ],
)  # fmt: skip
def test_a_chat_template_that_fails_is_a_named_error_and_one_cli_line(
    tmp_path, capsys, template, message
):
    """The template is code from the checkpoint: whatever it raises (recursion, a division by
    zero, a type error, memory) is a ValueError saying the template failed, and one CLI line."""
    from decoding.cli import main

    folder = good_folder(tmp_path / "m")
    (folder / "chat_template.jinja").write_text(template)
    tokenizer = decoding.load_tokenizer(folder)
    with pytest.raises(ValueError) as info:
        tokenizer.apply_chat_template([{"role": "user", "content": "the cat"}])
    assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(folder), "--chat", "the cat"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_an_unreadable_tokenizer_file_is_named_with_the_first_200_characters_of_the_reason(
    tmp_path,
):
    """The tokenizers package's reason quotes the bad value in full; the ValueError keeps the
    first 200 characters of it: 'invalid type: string "' (22) and 178 of the 300 y's."""
    pytest.importorskip("tokenizers")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"truncation": "y" * 300}))
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'tokenizer.json'} is not a tokenizer file the tokenizers package can "
        f'read: invalid type: string "{"y" * 178}'
    )


def test_an_error_without_a_message_is_named_by_its_type():
    from decoding.lm.loading.tokenizer import _built

    def fail():
        raise LookupError

    with pytest.raises(ValueError) as info:
        _built(fail, "what")
    assert str(info.value) == "what: LookupError"


# --- open_file, shown and MappedFile directly: the flags a file is opened with, a file turned
# into a FIFO between the check and the open, a path cut for a message, a mapping that fails ---

from decoding.lm.loading import _common  # noqa: E402

BINARY = 1 << 30  # stands for Windows' O_BINARY; taken out again before the real os.open


def spy_open(monkeypatch):
    """Record the flags every os.open is asked for (``BINARY`` removed before opening)."""
    flags, real = [], os.open

    def spy(path, given, *args, **kwargs):
        flags.append(given)
        return real(path, given & ~BINARY, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return flags


def test_a_file_is_opened_read_only_without_blocking_and_in_binary(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"a": 1}')
    monkeypatch.setattr(os, "O_BINARY", BINARY, raising=False)
    flags = spy_open(monkeypatch)
    assert decoding.lm.loading.read_json(path) == {"a": 1}
    assert flags == [os.O_RDONLY | os.O_NONBLOCK | BINARY]


def test_a_platform_without_nonblocking_or_binary_flags_opens_read_only(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"a": 1}')
    monkeypatch.delattr(os, "O_NONBLOCK")
    monkeypatch.delattr(os, "O_BINARY", raising=False)
    flags = spy_open(monkeypatch)
    assert decoding.lm.loading.read_json(path) == {"a": 1}
    assert flags == [os.O_RDONLY]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_file_replaced_by_a_fifo_after_its_check_is_refused_once_opened(tmp_path, monkeypatch):
    regular = tmp_path / "regular.json"
    regular.write_text("{}")
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    # The check sees the regular file; the open finds the FIFO (no writer: it must not block).
    monkeypatch.setattr(_common, "_stat", lambda path, follow=True: os.stat(regular))
    closed, real_close = [], os.close
    monkeypatch.setattr(os, "close", lambda fd: (closed.append(fd), real_close(fd))[1])
    with pytest.raises(ValueError) as info:
        decoding.lm.loading.read_json(fifo)
    assert str(info.value) == f"{fifo} is a FIFO, not a regular file"
    assert len(closed) == 1


def test_shown_keeps_120_characters_whole_and_cuts_longer_paths_in_the_middle():
    exact = "".join(chr(ord("a") + i % 26) for i in range(120))
    assert _common.shown(exact) == exact
    long = "".join(chr(ord("a") + i % 26) for i in range(121))
    # (120 - 30) // 2 = 45 characters either side of "...".
    assert _common.shown(long) == f"{long[:45]}...{long[-45:]} (121 characters)"
    assert long[:45] == "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs"
    assert _common.shown(b"/models/tiny") == "/models/tiny"
    assert _common.shown(7) == "7"


def test_a_mapping_that_fails_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    import mmap

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\0" * 64)

    def refuse(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", refuse)
    with pytest.raises(OSError) as info:
        _common.MappedFile(path)
    assert str(info.value) == f"{path}: cannot allocate memory"
