"""`Tokenizer`: text to token ids and back, special tokens, and chat templates, from a checkpoint
folder (``tokenizer.json`` through the ``tokenizers`` package, ``tokenizer_config.json``) or a
GGUF file (a byte-level BPE built from its tokens, merges and pre-tokenizer type).

Chat templates are rendered the way transformers renders them: a sandboxed Jinja environment
(``jinja2``) with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension,
``raise_exception``, ``strftime_now`` and a ``tojson`` that does not escape HTML, given
``messages``, ``add_generation_prompt``, ``tools=None``, ``documents=None`` and the special
tokens (``bos_token``, ``eos_token``, ...) as variables; the text is then tokenized without
adding special tokens (the template writes them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from decoding._validate import brief, is_int, is_sequence
from decoding.lm.loading._common import (
    MAX_TOKENIZER_BYTES,
    Folder,
    checkpoint_kind,
    read_json,
    read_text,
    require,
    shown,
)
from decoding.lm.loading.gguf_files import GGUFFile, is_gguf

__all__ = ["GGUF_PRE_TOKENIZERS", "Tokenizer", "load_tokenizer"]

SPECIAL_NAMES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)  # fmt: skip

# GPT-2's split (HF's ByteLevel regex); the others as llama.cpp's `llama-vocab.cpp` states them.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> (splits applied in turn, BPE ignore_merges as llama.cpp sets it).
GGUF_PRE_TOKENIZERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "gpt-2": ((_GPT2,), False),
    "gpt2": ((_GPT2,), False),
    "smollm": ((r"\p{N}", _GPT2), False),
    "starcoder": ((r"\p{N}", _GPT2), False),
    "refact": ((r"\p{N}", _GPT2), False),
    "llama3": ((_LLAMA3,), True),
    "llama-v3": ((_LLAMA3,), True),
    "llama-bpe": ((_LLAMA3,), True),
    "qwen2": ((_QWEN2,), False),
    "deepseek-r1-qwen": ((_QWEN2,), False),
}


def _token_text(value: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


class Tokenizer:
    """Text to token ids and back (the ``tokenizers`` package), with the checkpoint's special
    tokens and chat template. Build one with `load_tokenizer`."""

    def __init__(
        self,
        inner: Any,
        special_tokens: Mapping[str, str] | None = None,
        chat_template: str | None = None,
        source: str = "the tokenizer",
    ) -> None:
        self._inner = inner
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        self.chat_template = chat_template
        self._source = source
        self._token_bytes: tuple[bytes | None, ...] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Read a ``tokenizer.json`` alone (no special-token names, no chat template)."""
        tokenizers = require("tokenizers")
        kind, path = checkpoint_kind(path, "tokenizer file")
        if kind == "folder":
            raise IsADirectoryError(f"{shown(path)} is a folder, not a tokenizer.json file")
        return cls(_read_tokenizer(tokenizers, path), source=str(path))

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer knows (added tokens included)."""
        return int(self._inner.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str | None) -> int | None:
        """The id of ``token`` (None for None or an unknown token)."""
        if token is None:
            return None
        if not isinstance(token, str):
            raise TypeError(f"token must be a str or None, got {brief(token)}")
        found = self._inner.token_to_id(token)
        return None if found is None else int(found)

    def id_to_token(self, id: int) -> str | None:
        """The token of ``id``, or None for an int the tokenizer has no token for (negative, too
        large, or a gap in its vocabulary)."""
        if not is_int(id):
            raise TypeError(f"id must be an int token id, got {brief(id)}")
        if not 0 <= id <= _MAX_ID:
            return None
        found = self._inner.id_to_token(int(id))
        return None if found is None else str(found)

    def token_bytes(self) -> tuple[bytes | None, ...]:
        """The bytes each id adds to decoded text (``decode`` of ids is their concatenation
        read as UTF-8), one entry per id up to `vocab_size`; None for an id without a token.
        A token may hold part of a character: byte-level BPE splits multi-byte characters.

        Exact for byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2, SmolLM2: every GGUF this
        package reads) and added tokens (their text; ``tokenizers`` also runs added tokens
        through the decoder, so an added token that holds the decoder's own marks, such as
        ``Ġ`` or ``▁``, decodes otherwise). For others, ``<0xNN>`` tokens are the
        byte NN and ``▁`` is a space (SentencePiece), which ``decode`` may strip at the start.
        Computed once.
        """
        if self._token_bytes is None:
            added = {
                int(i): str(t.content) for i, t in self._inner.get_added_tokens_decoder().items()
            }
            byte_level = type(self._inner.decoder).__name__ == "ByteLevel"
            table = {c: b for b, c in _bytes_to_unicode().items()}
            found: list[bytes | None] = []
            for i in range(self.vocab_size):
                token = added.get(i)
                if token is not None:
                    found.append(token.encode("utf-8"))
                    continue
                token = self._inner.id_to_token(i)
                if token is None:
                    found.append(None)
                elif byte_level and all(c in table for c in token):
                    found.append(bytes(table[c] for c in token))
                elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                    try:
                        found.append(bytes([int(token[3:5], 16)]))
                    except ValueError:
                        found.append(token.encode("utf-8"))
                else:
                    found.append(token.replace("\u2581", " ").encode("utf-8"))
            self._token_bytes = tuple(found)
        return self._token_bytes

    @property
    def bos_token(self) -> str | None:
        """The beginning-of-sequence token, or None."""
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        """The end-of-sequence token, or None."""
        return self.special_tokens.get("eos_token")

    @property
    def bos_token_id(self) -> int | None:
        """The id of `bos_token`, or None."""
        return self.token_id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        """The id of `eos_token`, or None."""
        return self.token_id(self.eos_token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """``text`` -> token ids; with ``add_special_tokens`` the checkpoint's BOS/EOS are added
        where its tokenizer says (as ``AutoTokenizer.encode`` does)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {brief(text)}")
        if not isinstance(add_special_tokens, bool):
            raise TypeError(f"add_special_tokens must be a bool, got {brief(add_special_tokens)}")
        return list(self._inner.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Token ids -> text; special tokens kept unless ``skip_special_tokens``.

        Raises:
            TypeError: ``ids`` is not a sequence of ints (floats and bools are refused, not
                truncated).
            ValueError: an id the tokenizer has no token for (negative, too large, or a gap in
                its vocabulary), named; the ``tokenizers`` package would leave it out of the
                text without a word.
        """
        if not isinstance(skip_special_tokens, bool):
            raise TypeError(f"skip_special_tokens must be a bool, got {brief(skip_special_tokens)}")
        if not is_sequence(ids):
            raise TypeError(f"ids must be a sequence of ints, got {brief(ids)}")
        values = []
        for j, i in enumerate(ids):
            if not is_int(i):
                raise TypeError(f"ids[{j}] must be an int token id, got {brief(i)}")
            if self.id_to_token(int(i)) is None:
                raise ValueError(
                    f"ids[{j}] = {brief(i)} is not a token id of this tokenizer (it has "
                    f"{self.vocab_size} tokens)"
                )
            values.append(int(i))
        return str(self._inner.decode(values, skip_special_tokens=skip_special_tokens))

    def decode_stream(self, skip_special_tokens: bool = False) -> Callable[[int], str | None]:
        """An incremental decoder: call it with each new token id; it returns the text that
        id completes, or None while a character is still incomplete (``tokenizers``'
        ``DecodeStream``). `decoding.TextStream` uses it."""
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(skip_special_tokens=skip_special_tokens)
        inner = self._inner

        def step(token: int) -> str | None:
            piece = stream.step(inner, int(token))
            return None if piece is None else str(piece)

        return step

    def render_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """The text `apply_chat_template` tokenizes."""
        if self.chat_template is None:
            raise ValueError(
                f"{self._source} has no chat template (none in tokenizer_config.json, "
                "chat_template.jinja, chat_template.json or the GGUF's tokenizer.chat_template)"
            )
        if (
            not isinstance(messages, Sequence)
            or isinstance(messages, str)
            or not all(isinstance(m, Mapping) for m in messages)
        ):
            raise TypeError(f"messages must be a sequence of dicts, got {brief(messages)}")
        if not isinstance(add_generation_prompt, bool):
            raise TypeError(
                f"add_generation_prompt must be a bool, got {brief(add_generation_prompt)}"
            )
        jinja2 = require("jinja2")
        template = _compile(jinja2, self.chat_template)
        try:
            return str(
                template.render(
                    messages=[dict(m) for m in messages],
                    tools=None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **self.special_tokens,
                )
            )
        except jinja2.TemplateError as error:
            raise ValueError(f"the chat template refused the messages: {error}") from None
        except (Exception, RecursionError, MemoryError) as error:  # noqa: BLE001
            # The template is code from the checkpoint: whatever it raises is its failure.
            raise ValueError(f"the chat template failed: {_first(error)}") from None

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        """The token ids of ``messages`` (dicts with ``role`` and ``content``) rendered by the
        checkpoint's chat template, with the assistant's header when ``add_generation_prompt``.

        Raises:
            ValueError: the checkpoint has no chat template, or the template refuses the
                messages (its ``raise_exception``).
            TypeError: ``messages`` is not a sequence of dicts.
        """
        text = self.render_chat_template(messages, add_generation_prompt)
        return self.encode(text, add_special_tokens=False)


_COMPILED: dict[str, Any] = {}


def _compile(jinja2: Any, source: str) -> Any:
    """``source`` compiled in transformers' chat-template environment (cached)."""
    if source not in _COMPILED:
        sandbox = __import__("jinja2.sandbox", fromlist=["ImmutableSandboxedEnvironment"])

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(
            value: Any,
            ensure_ascii: bool = False,
            indent: int | None = None,
            separators: Any = None,
            sort_keys: bool = False,
        ) -> str:
            return json.dumps(
                value,
                ensure_ascii=ensure_ascii,
                indent=indent,
                separators=separators,
                sort_keys=sort_keys,
            )

        def strftime_now(format: str) -> str:
            return datetime.now().strftime(format)

        env = sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        try:
            _COMPILED[source] = env.from_string(source)
        except jinja2.TemplateError as error:
            raise ValueError(f"the chat template does not compile: {error}") from None
        except (Exception, RecursionError, MemoryError) as error:  # noqa: BLE001
            raise ValueError(f"the chat template does not compile: {_first(error)}") from None
    return _COMPILED[source]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The `Tokenizer` of a checkpoint: a folder (its ``tokenizer.json``, with the special
    tokens and chat template of ``tokenizer_config.json``, ``special_tokens_map.json``,
    ``chat_template.jinja`` or ``chat_template.json``), a ``.gguf`` file, or a
    ``tokenizer.json`` file.

    Raises:
        TypeError: ``path`` is not a str or Path.
        FileNotFoundError: no such folder or file, or a folder without ``tokenizer.json``.
        ValueError: a GGUF whose tokenizer model or pre-tokenizer type is not implemented; a
            malformed file (a ``tokenizer.json`` the ``tokenizers`` package cannot read, ...),
            a file that is not a regular file, resolves outside the folder or is over its size
            cap, each named.
        ImportError: ``tokenizers`` is not installed (``pip install 'numpy-decoding[hf]'``).
    """
    kind, path = checkpoint_kind(path, "tokenizer file")
    if kind == "folder":
        return _folder_tokenizer(Folder(path))
    if is_gguf(path):
        return gguf_tokenizer(GGUFFile(path))
    return Tokenizer.from_file(path)


_MAX_ID = 2**32 - 1  # the tokenizers package's ids are u32


def _read_tokenizer(tokenizers: Any, path: Path) -> Any:
    """The ``tokenizers.Tokenizer`` in ``path`` (at most `MAX_TOKENIZER_BYTES`); a ValueError
    naming the file when the package cannot read it (it raises a bare ``Exception``)."""
    text = read_text(path, MAX_TOKENIZER_BYTES, "MAX_TOKENIZER_BYTES")
    return _built(
        lambda: tokenizers.Tokenizer.from_str(text),
        f"{shown(path)} is not a tokenizer file the tokenizers package can read",
    )


def _first(error: BaseException) -> str:
    """``Type: message``, the message's first line cut at 200 characters."""
    line = (str(error).splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _built(make: Any, what: str) -> Any:
    """``make()``, whose errors (the tokenizers package raises bare ``Exception``, and a Rust
    panic, a ``BaseException``) become a ValueError starting with ``what``."""
    try:
        return make()
    except (KeyboardInterrupt, SystemExit, MemoryError, GeneratorExit):
        raise
    except BaseException as error:  # noqa: BLE001 - the tokenizers package's own errors
        line = (str(error).splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{what}: {line[:200]}") from None


def _folder_tokenizer(folder: Folder) -> Tokenizer:
    tokenizers = require("tokenizers")
    file = folder.file("tokenizer.json")
    if file is None:
        raise FileNotFoundError(
            f"tokenizer file {shown(folder.path / 'tokenizer.json')} does not exist"
        )
    inner = _read_tokenizer(tokenizers, file)
    found = folder.file("tokenizer_config.json")
    config = {} if found is None else read_json(found)
    found = folder.file("special_tokens_map.json")
    mapped = {} if found is None else read_json(found)
    special = {}
    for name in SPECIAL_NAMES:
        text = _token_text(config.get(name)) or _token_text(mapped.get(name))
        if text is not None:
            special[name] = text
    add_bos, add_eos = bool(config.get("add_bos_token")), bool(config.get("add_eos_token"))
    if inner.post_processor is None and (add_bos or add_eos):
        # No post-processor in tokenizer.json: the config's flags say what to add.
        _set_post_processor(tokenizers, inner, special, add_bos, add_eos, shown(folder.path))
    return Tokenizer(inner, special, _folder_template(folder, config), str(folder.path))


def _folder_template(folder: Folder, config: dict[str, Any]) -> str | None:
    """The default chat template: ``chat_template.jinja``, then ``chat_template.json``, then
    ``tokenizer_config.json`` (a string, or a list of named templates)."""
    jinja = folder.file("chat_template.jinja")
    if jinja is not None:
        return read_text(jinja)
    template = config.get("chat_template")
    found = folder.file("chat_template.json")
    if found is not None:
        template = read_json(found).get("chat_template", template)
    if isinstance(template, list):
        named = {
            t.get("name"): t.get("template")
            for t in template
            if isinstance(t, Mapping) and isinstance(t.get("name"), str)
        }
        template = named.get("default")
    return template if isinstance(template, str) else None


def _set_post_processor(
    tokenizers: Any, inner: Any, special: Mapping[str, str], bos: bool, eos: bool, where: str
) -> None:
    """Add BOS before and/or EOS after each text (transformers' ``update_post_processor``; a
    token the settings do not name is not added). ``where`` names the checkpoint in errors."""
    bos_token, eos_token = special.get("bos_token"), special.get("eos_token")
    bos = bos and bos_token is not None and inner.token_to_id(bos_token) is not None
    eos = eos and eos_token is not None and inner.token_to_id(eos_token) is not None
    if not (bos or eos):
        return
    first, last = f"{bos_token}:0 " if bos else "", f" {eos_token}:0" if eos else ""
    pairs = [(t, inner.token_to_id(t)) for t, on in ((bos_token, bos), (eos_token, eos)) if on]
    inner.post_processor = _built(
        lambda: tokenizers.processors.TemplateProcessing(
            single=f"{first}$A:0{last}", special_tokens=pairs
        ),
        f"{where}: the special tokens {brief(bos_token)} and {brief(eos_token)} do not make a "
        "template",
    )


def gguf_tokenizer(gguf: GGUFFile) -> Tokenizer:
    """A byte-level BPE tokenizer from a GGUF's ``tokenizer.ggml.*`` metadata: its tokens,
    merges, pre-tokenizer type (`GGUF_PRE_TOKENIZERS`), control tokens (special) and
    user-defined ones (added), BOS/EOS as its ``add_bos_token`` / ``add_eos_token`` say."""
    tokenizers = require("tokenizers")
    path = shown(gguf.path)
    model = gguf.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"{path}: tokenizer.ggml.model {brief(model)} is not supported "
            "(byte-level BPE, 'gpt2', only)"
        )
    pre = gguf.get("tokenizer.ggml.pre", "default")
    if pre not in GGUF_PRE_TOKENIZERS:
        raise ValueError(
            f"{path}: tokenizer.ggml.pre {brief(pre)} is not supported "
            f"(supported: {', '.join(GGUF_PRE_TOKENIZERS)})"
        )
    splits, ignore_merges = GGUF_PRE_TOKENIZERS[pre]
    tokens = gguf.get("tokenizer.ggml.tokens")
    merges = gguf.get("tokenizer.ggml.merges")
    if not isinstance(tokens, list) or not isinstance(merges, list):
        raise ValueError(f"{path}: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing")
    if not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{path}: tokenizer.ggml.tokens must be a list of strings")
    if not all(isinstance(m, str) and " " in m for m in merges):
        raise ValueError(f"{path}: tokenizer.ggml.merges must be a list of strings 'left right'")
    types = gguf.get("tokenizer.ggml.token_type")
    if types is None:
        types = [1] * len(tokens)
    if not isinstance(types, list) or len(types) != len(tokens):
        raise ValueError(
            f"{path}: tokenizer.ggml.token_type must list one type per token "
            f"({len(tokens)}), got {brief(types)}"
        )
    alphabet = set(_bytes_to_unicode().values())
    spelled = _bytes_to_unicode()
    # A token is spelled in the byte-level alphabet; one outside it is respelled from its UTF-8
    # bytes, except a control or user-defined one: that is matched as written, before BPE.
    vocab = {
        t
        if set(t) <= alphabet or kind in (3, 4)
        else "".join(spelled[b] for b in t.encode("utf-8")): i
        for i, (t, kind) in enumerate(zip(tokens, types, strict=True))
    }
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    bpe = _built(
        lambda: tokenizers.models.BPE(
            vocab, pairs, dropout=None, fuse_unk=False, ignore_merges=ignore_merges
        ),
        f"{path}: its tokens and merges do not make a BPE tokenizer",
    )
    inner = tokenizers.Tokenizer(bpe)
    steps = [
        tokenizers.pre_tokenizers.Split(tokenizers.Regex(s), behavior="isolated") for s in splits
    ]
    steps.append(tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(steps)
    inner.decoder = tokenizers.decoders.ByteLevel()
    control = [
        tokenizers.AddedToken(t, normalized=False, special=True)
        for t, kind in zip(tokens, types, strict=True)
        if kind == 3
    ]
    inner.add_special_tokens(control)
    user = [
        tokenizers.AddedToken(t, normalized=False, special=False)
        for t, kind in zip(tokens, types, strict=True)
        if kind == 4
    ]
    inner.add_tokens(user)
    special = {}
    for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"),
                      ("pad_token", "padding")):  # fmt: skip
        index = gguf.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(index, int) and 0 <= index < len(tokens):
            special[name] = tokens[index]
    _set_post_processor(
        tokenizers,
        inner,
        special,
        bool(gguf.get("tokenizer.ggml.add_bos_token", False)),
        bool(gguf.get("tokenizer.ggml.add_eos_token", False)),
        path,
    )
    template = gguf.get("tokenizer.chat_template")
    return Tokenizer(
        inner, special, template if isinstance(template, str) else None, str(gguf.path)
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table
