"""Hostile checkpoints: a small valid Llama folder and GGUF file written by hand (NumPy and
``struct``, no writer package), and some hundred broken, oversized, misplaced or hostile
variants of them, each with the error a loader must raise.

`build(root)` writes every case under ``root`` once; `CASES` maps a case's name to
``(path under root, loaders to call, error type, words the message must hold)``. The API tests
(`test_hostile_checkpoints.py`) and the CLI table (`test_cli_table.py`) share them.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from checkpoints import WORDS

V, D, H, G, F = len(WORDS), 8, 2, 1, 12  # vocabulary, width, heads, KV heads, MLP width
E = D // H


def llama_config(**extra: object) -> dict[str, object]:
    return {
        "model_type": "llama", "vocab_size": V, "hidden_size": D, "intermediate_size": F,
        "num_hidden_layers": 1, "num_attention_heads": H, "num_key_value_heads": G,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "eos_token_id": 1,
    } | extra  # fmt: skip


def llama_tensors() -> dict[str, np.ndarray]:
    """HF-named float32 tensors of a one-layer Llama with a tied head."""
    shapes = {
        "model.embed_tokens.weight": (V, D), "model.norm.weight": (D,),
        "model.layers.0.input_layernorm.weight": (D,),
        "model.layers.0.post_attention_layernorm.weight": (D,),
        "model.layers.0.self_attn.q_proj.weight": (H * E, D),
        "model.layers.0.self_attn.k_proj.weight": (G * E, D),
        "model.layers.0.self_attn.v_proj.weight": (G * E, D),
        "model.layers.0.self_attn.o_proj.weight": (D, H * E),
        "model.layers.0.mlp.gate_proj.weight": (F, D),
        "model.layers.0.mlp.up_proj.weight": (F, D),
        "model.layers.0.mlp.down_proj.weight": (D, F),
    }  # fmt: skip
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=s).astype(np.float32) * 0.3 for k, s in shapes.items()}


def safetensors_bytes(entries: dict[str, tuple[str, tuple[int, ...], bytes]]) -> bytes:
    """A safetensors file: ``entries`` maps a name to (dtype, shape, raw bytes)."""
    header, offset = {}, 0
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
        offset += len(raw)
    return header_bytes(header) + b"".join(raw for _, _, raw in entries.values())


def header_bytes(header: object) -> bytes:
    """The length prefix and the JSON header, padded to 8 bytes."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def float_entries(tensors: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {k: ("F32", v.shape, v.tobytes()) for k, v in tensors.items()}


def tokenizer_json() -> str:
    """A WordLevel tokenizer over `WORDS` (whitespace split), as ``tokenizer.json``."""
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(WORDS)},
                  "unk_token": "[UNK]"},
    })  # fmt: skip


def good_folder(folder: Path) -> Path:
    """A valid checkpoint folder: config, weights, tokenizer, tokenizer config with a chat
    template, generation config."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(llama_config()))
    (folder / "model.safetensors").write_bytes(safetensors_bytes(float_entries(llama_tensors())))
    (folder / "tokenizer.json").write_text(tokenizer_json())
    template = "{% for m in messages %}the {{ m['content'] }}{% endfor %}"
    config = {"eos_token": "</s>", "chat_template": template}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 1}))
    return folder


# -- GGUF, by hand ------------------------------------------------------------------------------

U32, I32, F32, STRING, ARRAY = 4, 5, 6, 8, 9


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, kind: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", kind) + payload


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, U32, struct.pack("<I", value))


def kv_str(key: str, value: str) -> bytes:
    return kv(key, STRING, gguf_string(value))


def kv_strings(key: str, values: list[str]) -> bytes:
    payload = struct.pack("<IQ", STRING, len(values)) + b"".join(gguf_string(v) for v in values)
    return kv(key, ARRAY, payload)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
    "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
    "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
    "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
    "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
    "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
    "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
    "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
    "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
}  # fmt: skip


def gguf_metadata(**replace: bytes | None) -> list[bytes]:
    """The metadata entries of the valid GGUF (an architecture, sizes, a byte-level BPE
    tokenizer); ``replace`` swaps (bytes) or drops (None) entries by key, dots as ``__``."""
    entries = {
        "general.architecture": kv_str("general.architecture", "llama"),
        "llama.block_count": kv_u32("llama.block_count", 1),
        "llama.context_length": kv_u32("llama.context_length", 64),
        "llama.embedding_length": kv_u32("llama.embedding_length", D),
        "llama.feed_forward_length": kv_u32("llama.feed_forward_length", F),
        "llama.attention.head_count": kv_u32("llama.attention.head_count", H),
        "llama.attention.head_count_kv": kv_u32("llama.attention.head_count_kv", G),
        "tokenizer.ggml.model": kv_str("tokenizer.ggml.model", "gpt2"),
        "tokenizer.ggml.pre": kv_str("tokenizer.ggml.pre", "gpt-2"),
        "tokenizer.ggml.tokens": kv_strings("tokenizer.ggml.tokens", [*"abcdefghij", "Ġ", "ab"]),
        "tokenizer.ggml.merges": kv_strings("tokenizer.ggml.merges", ["a b"]),
        "tokenizer.ggml.eos_token_id": kv_u32("tokenizer.ggml.eos_token_id", 1),
    }
    for key, value in replace.items():
        key = key.replace("__", ".")
        if value is None:
            entries.pop(key)
        else:
            entries[key] = value
    return list(entries.values())


def gguf_bytes(
    metadata: list[bytes] | None = None,
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    tensor_info: Callable[[str, tuple[int, ...], int], bytes] | None = None,
) -> bytes:
    """A GGUF file of the `llama_tensors` (llama.cpp's names; the query and key rows are not
    permuted: the tests look at refusals, not values), F32, 32-byte aligned."""
    metadata = gguf_metadata() if metadata is None else metadata
    tensors = {GGUF_NAMES[k]: v for k, v in llama_tensors().items()}
    infos, data = [], b""
    for name, value in tensors.items():
        dims = tuple(reversed(value.shape))
        info = (
            gguf_string(name) + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", 0, len(data))
        )  # fmt: skip
        infos.append(info if tensor_info is None else tensor_info(name, dims, len(data)))
        data += value.tobytes()
        data += b"\0" * (-len(data) % 32)
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(infos) if tensor_count is None else tensor_count,
        len(metadata) if kv_count is None else kv_count,
    )
    head += b"".join(metadata) + b"".join(infos)
    return head + b"\0" * (-len(head) % 32) + data


# -- the cases ------------------------------------------------------------------------------------

ModelError = (ValueError, OSError)


class Cases:
    """Collects the cases as they are built: ``add(name, path, loaders, error, *words)``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.table: dict[
            str, tuple[Path, tuple[str, ...], type | tuple[type, ...], tuple[str, ...]]
        ] = {}

    def folder(self, name: str) -> Path:
        """A fresh copy of the good folder for case ``name`` (in a folder named after it)."""
        return good_folder(self.root / re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("."))

    def add(
        self, name: str, path: Path, loaders: str, error: type | tuple[type, ...], *words: str
    ) -> None:
        assert name not in self.table, name
        self.table[name] = (path, tuple(loaders.split()), error, words)


def rewrite_json(path: Path, **changes: object) -> None:
    """Set keys of the JSON object in ``path`` (None removes one)."""
    value = json.loads(path.read_text()) | changes
    path.write_text(json.dumps({k: v for k, v in value.items() if v is not None}))


def build(
    root: Path,
) -> dict[str, tuple[Path, tuple[str, ...], type | tuple[type, ...], tuple[str, ...]]]:
    """Write every case under ``root``; returns the table (see the module docstring). Loaders:
    ``model``, ``tokenizer``, ``generation`` (`load_model`, `load_tokenizer`,
    `load_generation_config`)."""
    c = Cases(root)
    root.mkdir(parents=True, exist_ok=True)
    outside = root / "outside"
    good_folder(outside)
    tensors = llama_tensors()
    entries = float_entries(tensors)
    names = sorted(tensors)

    # Reads outside the checkpoint: index entries, and symbolic links, resolving elsewhere.
    for name, entry in [
        ("index shard ../", "../outside/model.safetensors"),
        ("index shard ../../", "../../outside/model.safetensors"),
        ("index shard absolute", str(outside / "model.safetensors")),
        ("index shard /etc/passwd", "/etc/passwd"),
        ("index shard ../../../etc/passwd", "../../../../../../etc/passwd"),
        ("index shard sub/../..", "sub/../../outside/model.safetensors"),
        ("index shard empty", ""),
        ("index shard .", "."),
    ]:
        f = c.folder(name)
        (f / "model.safetensors").unlink()
        index = {"weight_map": dict.fromkeys(names, entry)}
        (f / "model.safetensors.index.json").write_text(json.dumps(index))
        c.add(name, f, "model", ValueError, "model.safetensors.index.json", repr(entry)[:30])
    for name, file, loader in [
        ("link config.json outside", "config.json", "model"),
        ("link model.safetensors outside", "model.safetensors", "model"),
        ("link tokenizer.json outside", "tokenizer.json", "tokenizer"),
        ("link tokenizer_config.json outside", "tokenizer_config.json", "tokenizer"),
        ("link generation_config.json outside", "generation_config.json", "generation"),
        ("link config.json outside (generation)", "config.json", "generation"),
    ]:
        f = c.folder(name)
        (f / file).unlink()
        (f / file).symlink_to(outside / file)
        c.add(name, f, loader, ValueError, file, "outside the checkpoint folder")
    for name, file, loader in [
        ("link chat_template.jinja outside", "chat_template.jinja", "tokenizer"),
        ("link chat_template.json outside", "chat_template.json", "tokenizer"),
        ("link special_tokens_map.json outside", "special_tokens_map.json", "tokenizer"),
    ]:
        f = c.folder(name)
        (outside / file).write_text("{}")
        (f / file).symlink_to(outside / file)
        c.add(name, f, loader, ValueError, file, "outside the checkpoint folder")
    f = c.folder("link shard outside")
    (f / "model.safetensors").rename(outside / "shard.safetensors")
    (f / "model-1.safetensors").symlink_to(outside / "shard.safetensors")
    (f / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": dict.fromkeys(names, "model-1.safetensors")})
    )
    c.add("link shard outside", f, "model", ValueError, "model-1.safetensors", "outside")
    f = c.folder("link index outside")
    (outside / "index.json").write_text(json.dumps({"weight_map": {}}))
    (f / "model.safetensors.index.json").symlink_to(outside / "index.json")
    c.add("link index outside", f, "model", ValueError, "index.json", "outside")
    f = c.folder("link config.json to /dev/zero")
    (f / "config.json").unlink()
    (f / "config.json").symlink_to("/dev/zero")
    c.add(
        "link config.json to /dev/zero", f, "model generation", ValueError, "/dev/zero", "outside"
    )
    for file, loader in [("config.json", "model"), ("model.safetensors", "model"),
                         ("tokenizer_config.json", "tokenizer")]:  # fmt: skip
        name = f"dangling link {file}"
        f = c.folder(name)
        (f / file).unlink()
        (f / file).symlink_to("gone.json")
        c.add(name, f, loader, FileNotFoundError, file, "a symbolic link to nothing")
    f = c.folder("link tokenizer.json to /dev/urandom")
    (f / "tokenizer.json").unlink()
    (f / "tokenizer.json").symlink_to("/dev/urandom")
    c.add("link tokenizer.json to /dev/urandom", f, "tokenizer", ValueError, "outside")

    # Hangs: FIFOs where files are expected, devices, folders.
    for file, loader in [
        ("config.json", "model"), ("model.safetensors", "model"),
        ("model.safetensors.index.json", "model"), ("tokenizer.json", "tokenizer"),
        ("tokenizer_config.json", "tokenizer"), ("special_tokens_map.json", "tokenizer"),
        ("chat_template.jinja", "tokenizer"), ("chat_template.json", "tokenizer"),
        ("generation_config.json", "generation"),
    ]:  # fmt: skip
        name = f"FIFO {file}"
        f = c.folder(name)
        if (f / file).exists():
            (f / file).unlink()
        os.mkfifo(f / file)
        c.add(name, f, loader, ValueError, file, "a FIFO, not a regular file")
        name = f"folder {file}"
        f = c.folder(name)
        if (f / file).exists():
            (f / file).unlink()
        (f / file).mkdir()
        c.add(name, f, loader, IsADirectoryError, file, "is a folder, not a file")
    f = c.folder("FIFO shard")
    (f / "model.safetensors").unlink()
    os.mkfifo(f / "shard.safetensors")
    (f / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": dict.fromkeys(names, "shard.safetensors")})
    )
    c.add("FIFO shard", f, "model", ValueError, "shard.safetensors", "a FIFO")
    os.mkfifo(root / "fifo.gguf")
    c.add("FIFO as the .gguf file", root / "fifo.gguf", "model tokenizer generation", ValueError,
          "fifo.gguf", "a FIFO")  # fmt: skip
    os.mkfifo(root / "fifo")
    c.add("FIFO as the checkpoint", root / "fifo", "model tokenizer generation", ValueError,
          "fifo", "neither a checkpoint folder nor a .gguf file")  # fmt: skip
    c.add("/dev/zero as the checkpoint", Path("/dev/zero"), "model tokenizer generation",
          ValueError, "/dev/zero", "a character device")  # fmt: skip
    (root / "zero.gguf").symlink_to("/dev/zero")
    c.add("link .gguf to /dev/zero", root / "zero.gguf", "model tokenizer generation",
          ValueError, "zero.gguf", "a character device")  # fmt: skip

    # Unbounded reads: files over their cap (sparse: nothing is written but the size).
    from decoding.lm.loading import (
        MAX_CONFIG_BYTES,
        MAX_SAFETENSORS_HEADER_BYTES,
        MAX_TOKENIZER_BYTES,
    )

    for file, loader, cap, cap_name in [
        ("config.json", "model", MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES"),
        ("model.safetensors.index.json", "model", MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES"),
        ("tokenizer_config.json", "tokenizer", MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES"),
        ("chat_template.jinja", "tokenizer", MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES"),
        ("generation_config.json", "generation", MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES"),
        ("tokenizer.json", "tokenizer", MAX_TOKENIZER_BYTES, "MAX_TOKENIZER_BYTES"),
    ]:
        name = f"huge {file}"
        f = c.folder(name)
        with open(f / file, "ab") as handle:
            handle.truncate(cap + 1)
        c.add(name, f, loader, ValueError, file, f"larger than decoding.lm.loading.{cap_name}")
    f = c.folder("huge safetensors header length")
    with open(f / "model.safetensors", "wb") as handle:
        handle.write((MAX_SAFETENSORS_HEADER_BYTES + 8).to_bytes(8, "little"))
        handle.truncate(MAX_SAFETENSORS_HEADER_BYTES + 64)
    c.add("huge safetensors header length", f, "model", ValueError, "model.safetensors",
          "MAX_SAFETENSORS_HEADER_BYTES")  # fmt: skip

    # Corrupt safetensors files.
    good = safetensors_bytes(entries)
    norm = "model.norm.weight"
    rest = {k: v for k, v in entries.items() if k != norm}
    raw_norm = tensors[norm].tobytes()

    def header_with(info: object) -> bytes:
        return _header_and_data(rest, {norm: info}, raw_norm)

    corrupt = {
        "empty": (b"", "is empty"),
        "3 bytes": (b"abc", "only 3 bytes"),
        "truncated header": (good[:40], "header length"),
        "truncated data": (good[:-7], "lies past the end of the file"),
        "header length 2**63": ((2**63).to_bytes(8, "little") + b"{}", "header length"),
        "header length 2**64-1": (b"\xff" * 8 + b"{}" * 8, "header length"),
        "garbage": (bytes(range(256)) * 4, "not a safetensors file"),
        "header not UTF-8": ((4).to_bytes(8, "little") + b"\xff\xfe{}", "not UTF-8"),
        "header not JSON": ((4).to_bytes(8, "little") + b"{x: ", "not valid JSON"),
        "header a list": ((8).to_bytes(8, "little") + b"[1, 2]  ", "not a JSON object"),
        "header nested deep": (
            (40000).to_bytes(8, "little") + b"[" * 20000 + b"]" * 20000,
            "nested too deeply",
        ),
        "entry a list": (header_with([1, 2]), "malformed entry"),
        "entry without dtype": (
            header_with({"shape": [D], "data_offsets": [0, 4 * D]}),
            "malformed entry",
        ),
        "dtype a list": (
            header_with({"dtype": ["F32"], "shape": [D], "data_offsets": [0, 4 * D]}),
            "malformed entry",
        ),
        "offsets reversed": (
            header_with({"dtype": "F32", "shape": [D], "data_offsets": [4 * D, 0]}),
            "malformed entry",
        ),
        "offsets negative": (
            header_with({"dtype": "F32", "shape": [D], "data_offsets": [-4, 4 * D - 4]}),
            "malformed entry",
        ),
        "offsets floats": (
            header_with({"dtype": "F32", "shape": [D], "data_offsets": [0.0, 32.0]}),
            "malformed entry",
        ),
        "offsets bools": (
            header_with({"dtype": "F32", "shape": [1], "data_offsets": [False, 4]}),
            "malformed entry",
        ),
        "shape negative": (
            header_with({"dtype": "F32", "shape": [-D], "data_offsets": [0, 4 * D]}),
            "malformed entry",
        ),
        "shape bool": (
            header_with({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}),
            "malformed entry",
        ),
        "shape not the bytes": (
            header_with({"dtype": "F32", "shape": [D + 1], "data_offsets": [0, 4 * D]}),
            "malformed entry",
        ),
        "shape 2**40 x 2**40": (
            header_with({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4 * D]}),
            "malformed entry",
        ),
        "offsets past the end": (
            header_with({"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}),
            "lies past the end of the file",
        ),
        "overlapping tensors": (_overlapping(entries), "overlap"),
        "float8 tensor": (
            header_with({"dtype": "F8_E4M3", "shape": [D], "data_offsets": [0, D]}),
            "'F8_E4M3'",
        ),
        "dtype unknown": (
            header_with({"dtype": "F128", "shape": [D], "data_offsets": [0, 4 * D]}),
            "'F128'",
        ),
    }
    for dtype, size in [("I8", 1), ("U8", 1), ("I16", 2), ("I32", 4), ("I64", 8), ("BOOL", 1),
                        ("U32", 4), ("F8_E5M2", 1)]:  # fmt: skip
        info = {"dtype": dtype, "shape": [D], "data_offsets": [0, size * D]}
        corrupt[f"{dtype} tensor"] = (header_with(info), f"dtype '{dtype}', which is not supported")
    for name, (content, words) in corrupt.items():
        f = c.folder(f"safetensors {name}")
        (f / "model.safetensors").write_bytes(content)
        c.add(f"safetensors {name}", f, "model", ValueError, "model.safetensors", words)

    # Sharded indexes that do not match their shards, or are not indexes.
    def sharded(name: str, weight_map: object, shards: dict[str, list[str]]) -> Path:
        f = c.folder(name)
        (f / "model.safetensors").unlink()
        for shard, held in shards.items():
            (f / shard).write_bytes(safetensors_bytes({k: entries[k] for k in held}))
        (f / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return f

    half = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    right = {n: s for s, held in half.items() for n in held}
    cases = [
        ("index weight_map a list", list(right), "weight_map must be a JSON object"),
        ("index weight_map null", None, "weight_map must be a JSON object"),
        ("index weight_map a string", "a.safetensors", "weight_map must be a JSON object"),
        ("index shard name an int", right | {names[0]: 3}, "must be a file name, got 3"),
        ("index shard name null", right | {names[0]: None}, "must be a file name, got None"),
        ("index shard name a list", right | {names[0]: ["a"]}, "must be a file name"),
        ("index shard missing a tensor", right | {names[0]: "b.safetensors"},
         "which does not hold it"),
        ("index lists a missing tensor", right | {"model.extra.weight": "a.safetensors"},
         "'model.extra.weight'"),
        ("index misses a tensor", {k: v for k, v in right.items() if k != names[1]},
         "does not list it"),
        ("index names a missing shard", right | {names[0]: "c.safetensors"},
         "'c.safetensors' is missing"),
    ]  # fmt: skip
    for name, weight_map, words in cases:
        error = FileNotFoundError if "missing shard" in name else ValueError
        c.add(name, sharded(name, weight_map, half), "model", error, words)
    both = {"a.safetensors": names, "b.safetensors": names[1::2]}
    c.add("index tensor in two shards", sharded("index tensor in two shards", right, both),
          "model", ValueError, "holds tensor")  # fmt: skip
    f = c.folder("index not JSON")
    (f / "model.safetensors.index.json").write_text("{")
    c.add("index not JSON", f, "model", ValueError, "model.safetensors.index.json", "JSON")

    # config.json: not an object, not UTF-8, values out of their domain.
    for name, text, words in [
        ("config a list", "[1, 2]", "must hold a JSON object, not list"),
        ("config null", "null", "must hold a JSON object, not NoneType"),
        ("config a string", '"llama"', "must hold a JSON object, not str"),
        ("config empty", "", "not valid JSON"),
        ("config not UTF-8", "\udcff", "not UTF-8"),
        ("config nested deep", "[" * 100000 + "]" * 100000, "nested too deeply"),
        ("config 5000-digit int", '{"model_type": "llama", "vocab_size": ' + "9" * 5000 + "}",
         "not valid JSON"),
    ]:  # fmt: skip
        f = c.folder(name)
        (f / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        c.add(name, f, "model", ValueError, "config.json", words)
    for name, changes, words in [
        ("model_type a list", {"model_type": ["llama"]}, "unsupported model_type ['llama']"),
        ("model_type a dict", {"model_type": {"llama": 1}}, "unsupported model_type {'llama': 1}"),
        ("model_type missing", {"model_type": None}, "unsupported model_type None"),
        ("rms_norm_eps Infinity", {"rms_norm_eps": float("inf")}, "rms_norm_eps"),
        ("rms_norm_eps NaN", {"rms_norm_eps": float("nan")}, "rms_norm_eps"),
        ("rms_norm_eps -1", {"rms_norm_eps": -1.0}, "rms_norm_eps"),
        ("rms_norm_eps true", {"rms_norm_eps": True}, "rms_norm_eps"),
        ("rope_theta Infinity", {"rope_theta": float("inf")}, "rope_theta"),
        ("rope_theta NaN", {"rope_theta": float("nan")}, "rope_theta"),
        ("rope_theta -Infinity", {"rope_theta": float("-inf")}, "rope_theta"),
        ("hidden_size 0", {"hidden_size": 0}, "hidden_size"),
        ("hidden_size -8", {"hidden_size": -8}, "hidden_size"),
        ("hidden_size true", {"hidden_size": True}, "hidden_size"),
        ("hidden_size 8.0", {"hidden_size": 8.0}, "hidden_size"),
        ("hidden_size Infinity", {"hidden_size": float("inf")}, "hidden_size"),
        ("vocab_size false", {"vocab_size": False}, "vocab_size"),
        ("num_hidden_layers 0", {"num_hidden_layers": 0}, "num_hidden_layers"),
        ("num_attention_heads 0", {"num_attention_heads": 0}, "num_attention_heads"),
        ("rope_scaling factor Infinity",
         {"rope_scaling": {"rope_type": "linear", "factor": float("inf")}}, "factor"),
        ("rope_scaling factor NaN",
         {"rope_scaling": {"rope_type": "linear", "factor": float("nan")}}, "factor"),
        ("rope_scaling a list", {"rope_scaling": ["linear"]}, "rope_scaling"),
        ("rope_scaling type a list", {"rope_scaling": {"rope_type": ["linear"]}}, "rope_scaling"),
        ("llama3 equal frequency factors",
         {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0,
                           "high_freq_factor": 2.0, "original_max_position_embeddings": 64}},
         "high_freq_factor"),
        ("yarn beta_fast negative",
         {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": -1}}, "beta_fast"),
        ("yarn attention_factor Infinity",
         {"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                           "attention_factor": float("inf")}}, "attention_factor"),
        ("yarn mscale NaN",
         {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "mscale": float("nan")}}, "mscale"),
        ("yarn rope_theta 1", {"rope_theta": 1.0,
                               "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_theta"),
        ("qwen2 layer_types of dicts",
         {"model_type": "qwen2", "use_sliding_window": True, "layer_types": [{"a": 1}]},
         "layer_types"),
        ("quantization_config a list", {"quantization_config": ["gptq"]}, "quantization_config"),
        ("tie_word_embeddings 1", {"tie_word_embeddings": 1}, "tie_word_embeddings"),
    ]:  # fmt: skip
        f = c.folder(name)
        rewrite_json(f / "config.json", **changes)
        c.add(name, f, "model", ValueError, "config.json", words)

    # Tokenizer files.
    for name, file, text, words in [
        ("tokenizer.json not JSON", "tokenizer.json", "{", "tokenizers package can read"),
        ("tokenizer.json {}", "tokenizer.json", "{}", "tokenizers package can read"),
        ("tokenizer.json a list", "tokenizer.json", "[1]", "tokenizers package can read"),
        ("tokenizer.json unknown model", "tokenizer.json", '{"model": {"type": "X"}}',
         "tokenizers package can read"),
        ("tokenizer.json merges out of vocabulary", "tokenizer.json",
         '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}',
         "tokenizers package can read"),
        ("tokenizer.json not UTF-8", "tokenizer.json", "\udcff", "not UTF-8"),
        ("tokenizer.json nested deep", "tokenizer.json", "[" * 5000 + "]" * 5000,
         "tokenizers package can read"),
        ("tokenizer_config.json a list", "tokenizer_config.json", "[]", "JSON object"),
        ("tokenizer_config.json not JSON", "tokenizer_config.json", "{", "not valid JSON"),
        ("special_tokens_map.json null", "special_tokens_map.json", "null", "JSON object"),
        ("chat_template.json a string", "chat_template.json", '"x"', "JSON object"),
        ("chat_template.jinja not UTF-8", "chat_template.jinja", "\udcff", "not UTF-8"),
    ]:  # fmt: skip
        f = c.folder(name)
        (f / file).write_bytes(text.encode("utf-8", "surrogateescape"))
        c.add(name, f, "tokenizer", ValueError, file, words)
    f = c.folder("special tokens that make no template")
    inner = json.loads(tokenizer_json())
    inner["model"]["vocab"]["x:1"] = V
    (f / "tokenizer.json").write_text(json.dumps(inner))
    rewrite_json(f / "tokenizer_config.json", bos_token="x:1", add_bos_token=True)
    c.add("special tokens that make no template", f, "tokenizer", ValueError, "'x:1'")
    f = c.folder("no tokenizer.json")
    (f / "tokenizer.json").unlink()
    c.add("no tokenizer.json", f, "tokenizer", FileNotFoundError, "tokenizer.json")

    # Generation settings beyond a float.
    for name, changes in [
        ("temperature NaN", {"temperature": float("nan")}),
        ("top_p Infinity", {"top_p": float("inf")}),
        ("max_new_tokens Infinity", {"max_new_tokens": float("inf")}),
    ]:
        f = c.folder(f"generation {name}")
        rewrite_json(f / "generation_config.json", **changes)
        key = next(iter(changes))
        c.add(f"generation {name}", f, "generation", ValueError, "generation_config.json", key)

    # Paths: missing, a file that is no checkpoint, long.
    c.add("missing folder", root / "absent", "model tokenizer generation", FileNotFoundError,
          "absent", "does not exist")  # fmt: skip
    (root / "notes.txt").write_text("not a checkpoint")
    c.add("a text file", root / "notes.txt", "model", ValueError, "notes.txt",
          "neither a checkpoint folder nor a GGUF file")  # fmt: skip
    long = root / ("x" * 200) / ("y" * 200) / ("z" * 200) / ("w" * 200) / ("v" * 200)
    c.add("1000-character missing path", long, "model tokenizer generation", FileNotFoundError,
          "does not exist", "characters)")  # fmt: skip
    c.add("path with a NUL byte", root / "a\0b", "model tokenizer generation", ValueError,
          "NUL byte")  # fmt: skip
    c.add("file name too long", root / ("n" * 300), "model tokenizer generation", OSError,
          "file name too long")  # fmt: skip
    (root / "afile").write_text("x")
    c.add("a path through a file", root / "afile" / "config.json", "model", FileNotFoundError,
          "does not exist")  # fmt: skip
    loop = root / "loop"
    loop.symlink_to(loop)
    c.add("a symbolic link loop", loop, "model tokenizer generation", OSError, "loop")

    # GGUF files.
    good_gguf = gguf_bytes()
    (root / "good.gguf").write_bytes(good_gguf)
    tensor_info_start = len(gguf_bytes(tensor_count=0)[:24]) + sum(map(len, gguf_metadata()))
    gguf_cases = {
        "empty": (b"", ValueError, "is empty"),
        "3 bytes": (b"GGU", ValueError, "does not start with 'GGUF'"),
        "bad magic": (b"GGUX" + good_gguf[4:], ValueError, "does not start with 'GGUF'"),
        "version 1": (gguf_bytes(version=1), ValueError, "GGUF version 1"),
        "version 2**32-1": (gguf_bytes(version=2**32 - 1), ValueError, "GGUF version 4294967295"),
        "only the magic": (b"GGUF", ValueError, "ends inside its header"),
        "truncated metadata": (good_gguf[:100], ValueError, "ends inside its header"),
        "truncated tensor infos": (good_gguf[: tensor_info_start + 20], ValueError,
                                   "ends inside its header"),
        "truncated data": (good_gguf[:-64], ValueError, "lies past the end of the file"),
        "tensor count 2**63": (gguf_bytes(tensor_count=2**63), ValueError, "MAX_GGUF_ITEMS"),
        "metadata count 2**64-1": (gguf_bytes(kv_count=2**64 - 1), ValueError, "MAX_GGUF_ITEMS"),
        "metadata count one too many": (gguf_bytes(kv_count=len(gguf_metadata()) + 1),
                                        ValueError, "is not a readable GGUF file"),
        "string length 2**63": (
            gguf_bytes(gguf_metadata(general__name=gguf_string("general.name")
                                     + struct.pack("<IQ", STRING, 2**63))),
            ValueError, "ends inside its header"),
        "array count 2**62": (
            gguf_bytes(gguf_metadata(tokenizer__ggml__tokens=kv(
                "tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 2**62)))),
            ValueError, "MAX_GGUF_ITEMS"),
        "u8 array count 2**40": (
            gguf_bytes(gguf_metadata(x=kv("x", ARRAY, struct.pack("<IQ", 0, 2**40)))),
            ValueError, "MAX_GGUF_ITEMS"),
        "value type 13": (gguf_bytes(gguf_metadata(x=kv("x", 13, b""))), ValueError,
                          "unknown metadata value type 13"),
        "value type 2**32-1": (gguf_bytes(gguf_metadata(x=kv("x", 2**32 - 1, b""))), ValueError,
                               "unknown metadata value type"),
        "array item type 99": (
            gguf_bytes(gguf_metadata(x=kv("x", ARRAY, struct.pack("<IQ", 99, 0)))),
            ValueError, "unknown metadata array item type 99"),
        "duplicate key": (gguf_bytes([*gguf_metadata(), kv_u32("llama.block_count", 1)]),
                          ValueError, "appears twice"),
        "alignment 0": (gguf_bytes([*gguf_metadata(), kv_u32("general.alignment", 0)]),
                        ValueError, "general.alignment"),
        "alignment 3": (gguf_bytes([*gguf_metadata(), kv_u32("general.alignment", 3)]),
                        ValueError, "general.alignment"),
        "tensor with 1000 dimensions": (
            gguf_bytes(tensor_info=lambda n, dims, at: gguf_string(n) + struct.pack("<I", 1000)),
            ValueError, "1000 dimensions"),
        "tensor offset 2**64-1": (
            gguf_bytes(tensor_info=lambda n, dims, at: gguf_string(n) + struct.pack("<I", len(dims))
                       + b"".join(struct.pack("<Q", d) for d in dims)
                       + struct.pack("<IQ", 0, 2**64 - 1 if n == "output_norm.weight" else at)),
            ValueError, "lies past the end of the file"),
        "tensor type I8": (
            gguf_bytes(tensor_info=lambda n, dims, at: gguf_string(n) + struct.pack("<I", len(dims))
                       + b"".join(struct.pack("<Q", d) for d in dims)
                       + struct.pack("<IQ", 24 if n == "output_norm.weight" else 0, at)),
            ValueError, "has type I8, which is not supported"),
        "tensor type 999": (
            gguf_bytes(tensor_info=lambda n, dims, at: gguf_string(n) + struct.pack("<I", len(dims))
                       + b"".join(struct.pack("<Q", d) for d in dims)
                       + struct.pack("<IQ", 999 if n == "output_norm.weight" else 0, at)),
            ValueError, "has type type 999"),
        "duplicate tensor": (
            gguf_bytes(tensor_info=lambda n, dims, at: gguf_string("token_embd.weight")
                       + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
                       + struct.pack("<IQ", 0, at)),
            ValueError, "appears twice"),
        "head count 0": (gguf_bytes(gguf_metadata(
            llama__attention__head_count=kv_u32("llama.attention.head_count", 0))),
            ValueError, "llama.attention.head_count must be positive"),
        "head count a string": (gguf_bytes(gguf_metadata(
            llama__attention__head_count=kv_str("llama.attention.head_count", "2"))),
            ValueError, "llama.attention.head_count"),
        "block count 2**32-1": (gguf_bytes(gguf_metadata(
            llama__block_count=kv_u32("llama.block_count", 2**32 - 1))),
            ValueError, "is missing tensor 'model.layers.1."),
        "rms epsilon NaN": (gguf_bytes([*gguf_metadata(), kv(
            "llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", float("nan")))]),
            ValueError, "rms_norm_eps"),
        "rope base Infinity": (gguf_bytes([*gguf_metadata(), kv(
            "llama.rope.freq_base", F32, struct.pack("<f", float("inf")))]),
            ValueError, "rope_theta"),
        "rope scale Infinity": (gguf_bytes([*gguf_metadata(), kv(
            "llama.rope.scaling.factor", F32, struct.pack("<f", float("inf")))]),
            ValueError, "factor"),
        "architecture an int": (gguf_bytes(gguf_metadata(
            general__architecture=kv_u32("general.architecture", 7))),
            ValueError, "GGUF architecture 7"),
    }  # fmt: skip
    for name, (content, error, words) in gguf_cases.items():
        path = root / f"gguf {name}.gguf"
        path.write_bytes(content)
        loaders = "model" if name in _MODEL_ONLY else "model tokenizer generation"
        c.add(f"gguf {name}", path, loaders, error, path.name, words)
    tokenizer_cases = {
        "tokens of ints": kv("tokenizer.ggml.tokens", ARRAY,
                             struct.pack("<IQ", U32, 2) + struct.pack("<II", 1, 2)),
        "merges without a space": kv_strings("tokenizer.ggml.merges", ["ab"]),
        "merges out of vocabulary": kv_strings("tokenizer.ggml.merges", ["x y"]),
        "token types of another length": kv("tokenizer.ggml.token_type", ARRAY,
                                            struct.pack("<IQ", I32, 1) + struct.pack("<i", 1)),
    }  # fmt: skip
    for name, entry in tokenizer_cases.items():
        path = root / f"gguf {name}.gguf"
        key = entry[8 : 8 + struct.unpack("<Q", entry[:8])[0]].decode().replace(".", "__")
        path.write_bytes(gguf_bytes(gguf_metadata(**{key: entry})))
        c.add(f"gguf {name}", path, "tokenizer", ValueError, path.name, key.split("__")[-1])
    path = root / "gguf sampling temperature NaN.gguf"
    path.write_bytes(gguf_bytes([*gguf_metadata(), kv(
        "general.sampling.temp", F32, struct.pack("<f", float("nan")))]))  # fmt: skip
    c.add("gguf sampling temperature NaN", path, "generation", ValueError, "general.sampling.temp")
    return c.table


# Cases that only the model refuses (the tokenizer and generation settings do not read them).
_MODEL_ONLY = {
    "truncated data", "tensor type I8", "tensor type 999", "tensor offset 2**64-1",
    "head count 0", "head count a string", "block count 2**32-1", "rms epsilon NaN",
    "rope base Infinity", "rope scale Infinity", "architecture an int",
}  # fmt: skip


def _header_and_data(rest: dict[str, tuple[str, tuple[int, ...], bytes]], odd: dict[str, object],
                     raw: bytes) -> bytes:  # fmt: skip
    """The file of ``rest`` plus tensors with hand-written header entries ``odd`` whose data
    (``raw``) comes after the others'."""
    header, offset = {}, 0
    for name, (dtype, shape, data) in rest.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}  # fmt: skip
        offset += len(data)
    for name, info in odd.items():
        if isinstance(info, dict) and isinstance(info.get("data_offsets"), list):
            info = info | {"data_offsets": [o + offset if type(o) is int and o >= 0 else o
                                            for o in info["data_offsets"]]}  # fmt: skip
        header[name] = info
    return header_bytes(header) + b"".join(d for _, _, d in rest.values()) + raw


def _overlapping(entries: dict[str, tuple[str, tuple[int, ...], bytes]]) -> bytes:
    """Two tensors of the same size sharing their bytes."""
    a, b = "model.norm.weight", "model.layers.0.input_layernorm.weight"
    rest = {k: v for k, v in entries.items() if k not in (a, b)}
    _, shape, raw = entries[a]
    info = {"dtype": "F32", "shape": list(shape), "data_offsets": [0, len(raw)]}
    return _header_and_data(rest, {a: info, b: dict(info)}, raw)
