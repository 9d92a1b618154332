"""`GenerationConfig`: the ids and sampling defaults a checkpoint ships for generation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from decoding._validate import brief
from decoding.lm.loading._common import Folder, checkpoint_kind, read_json, shown
from decoding.lm.loading.gguf_files import GGUFFile

__all__ = ["GenerationConfig", "load_generation_config"]


@attrs.frozen
class GenerationConfig:
    """A checkpoint's generation settings; None where it states none.

    Attributes:
        eos_token_ids: the ids that end a generation (possibly empty).
        bos_token_id, pad_token_id: the beginning-of-sequence and padding ids.
        temperature, top_k, top_p, repetition_penalty, max_new_tokens: the sampling defaults
            it recommends.
    """

    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None


def _ids(value: Any) -> tuple[int, ...]:
    """An id or a list of ids as a tuple (ints only, duplicates dropped, order kept)."""
    values = value if isinstance(value, list | tuple) else [value]
    ids = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return tuple(dict.fromkeys(ids))


def _id(value: Any) -> int | None:
    found = _ids(value)
    return found[0] if len(found) == 1 and not isinstance(value, list | tuple) else None


def _number(value: Any, kind: type, label: str, key: str) -> Any:
    """``value`` as a ``kind``, or None when it is not a number of that kind; an infinity or
    NaN (JSON has neither; Python's reader takes ``Infinity`` and ``NaN``) is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        raise ValueError(f"{label}: {key} must be a finite number, got {brief(value)}")
    if kind is int:
        return value if isinstance(value, int) else None
    return float(value)


def load_generation_config(path: str | Path) -> GenerationConfig:
    """The generation settings of a checkpoint folder or ``.gguf`` file.

    Folders: ``eos_token_ids`` from ``generation_config.json``'s ``eos_token_id`` (an id or a
    list), else ``config.json``'s, else the tokenizer's EOS token (``tokenizer_config.json``
    and ``tokenizer.json``); ``bos_token_id`` and ``pad_token_id`` from
    ``generation_config.json``, else ``config.json``; the sampling defaults from
    ``generation_config.json`` (``max_new_tokens`` only when it says so, not from
    ``max_length``). GGUF: ``tokenizer.ggml.eos_token_id`` (then the
    end-of-turn ids ``eot``/``eom`` llama.cpp also stops on), ``bos``/``padding`` ids and the
    ``general.sampling.*`` keys.
    """
    kind, path = checkpoint_kind(path)
    if kind == "file":
        return _gguf(GGUFFile(path))
    folder = Folder(path)
    found = folder.file("generation_config.json")
    generation = {} if found is None else read_json(found)
    label = shown(found)
    found = folder.file("config.json")
    config = {} if found is None else read_json(found)
    eos = _ids(generation.get("eos_token_id")) or _ids(config.get("eos_token_id"))
    if not eos and folder.file("tokenizer.json") is not None:
        from decoding.lm.loading.tokenizer import load_tokenizer

        token = load_tokenizer(path).eos_token_id
        eos = () if token is None else (token,)

    def number(key: str, kind: type) -> Any:
        return _number(generation.get(key), kind, label, key)

    def first_id(name: str) -> int | None:
        for source in (generation, config):
            if source.get(name) is not None:
                return _id(source[name])
        return None

    return GenerationConfig(
        eos_token_ids=eos,
        bos_token_id=first_id("bos_token_id"),
        pad_token_id=first_id("pad_token_id"),
        temperature=number("temperature", float),
        top_k=number("top_k", int),
        top_p=number("top_p", float),
        repetition_penalty=number("repetition_penalty", float),
        max_new_tokens=number("max_new_tokens", int),
    )


def _gguf(gguf: GGUFFile) -> GenerationConfig:
    def token(name: str) -> int | None:
        return _id(gguf.get(f"tokenizer.ggml.{name}_token_id"))

    def number(name: str, kind: type) -> Any:
        key = f"general.sampling.{name}"
        return _number(gguf.get(key), kind, shown(gguf.path), key)

    eos = tuple(t for t in (token("eos"), token("eot"), token("eom")) if t is not None)
    return GenerationConfig(
        eos_token_ids=tuple(dict.fromkeys(eos)),
        bos_token_id=token("bos"),
        pad_token_id=token("padding"),
        temperature=number("temp", float),
        top_k=number("top_k", int),
        top_p=number("top_p", float),
        repetition_penalty=number("penalty_repeat", float),
    )
