"""Checkpoints on disk for the loader, model and CLI tests: HF-format folders (``config.json``
and safetensors, written with ``safetensors.numpy``, no torch), a word-level checkpoint with its
tokenizer, and GGUF files written the way llama.cpp's converter writes them.

The optional packages (``safetensors``, ``tokenizers``, ``gguf``) are imported by the function
that needs them, through ``pytest.importorskip``: a test that writes a GGUF file is skipped
without ``gguf``, the rest run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

# -- HF-format folders ---------------------------------------------------------------------------


def save(folder, config, tensors):
    """Write ``config.json`` and ``model.safetensors`` (``tensors`` by HF name) into ``folder``;
    returns ``folder``."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    safetensors_numpy.save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "model.safetensors")
    )
    return folder


def write_gpt2(folder, rng, prefix="transformer.", vocab=40, d=16, layers=2, heads=2, ctx=32):
    tensors = {
        f"{prefix}wte.weight": rng.normal(size=(vocab, d)),
        f"{prefix}wpe.weight": rng.normal(size=(ctx, d)) * 0.1,
        f"{prefix}ln_f.weight": 1 + 0.1 * rng.normal(size=d),
        f"{prefix}ln_f.bias": 0.1 * rng.normal(size=d),
    }
    for i in range(layers):
        p = f"{prefix}h.{i}."
        shapes = {
            "ln_1.weight": (d,), "ln_1.bias": (d,), "attn.c_attn.weight": (d, 3 * d),
            "attn.c_attn.bias": (3 * d,), "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,),
            "ln_2.weight": (d,), "ln_2.bias": (d,), "mlp.c_fc.weight": (d, 4 * d),
            "mlp.c_fc.bias": (4 * d,), "mlp.c_proj.weight": (4 * d, d), "mlp.c_proj.bias": (d,),
        }  # fmt: skip
        for name, shape in shapes.items():
            scale = 1.0 if name.endswith("weight") and len(shape) == 1 else 0.3
            tensors[p + name] = (1.0 if scale == 1.0 else 0.0) + scale * rng.normal(size=shape)
    config = {
        "model_type": "gpt2", "vocab_size": vocab, "n_embd": d, "n_head": heads,
        "n_layer": layers, "n_positions": ctx, "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
    }  # fmt: skip
    save(folder, config, tensors)
    return tensors


def write_llama(
    folder, rng, model_type="llama", vocab=40, d=16, layers=2, heads=4, kv=2, ff=24, tied=False,
    biases=False, dtype=np.float64,
):  # fmt: skip
    e = d // heads
    tensors = {"model.embed_tokens.weight": rng.normal(size=(vocab, d)),
               "model.norm.weight": 1 + 0.1 * rng.normal(size=d)}  # fmt: skip
    if not tied:
        tensors["lm_head.weight"] = rng.normal(size=(vocab, d)) * 0.3
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": 1 + 0.1 * rng.normal(size=d),
            p + "post_attention_layernorm.weight": 1 + 0.1 * rng.normal(size=d),
            p + "self_attn.q_proj.weight": rng.normal(size=(heads * e, d)) * 0.4,
            p + "self_attn.k_proj.weight": rng.normal(size=(kv * e, d)) * 0.4,
            p + "self_attn.v_proj.weight": rng.normal(size=(kv * e, d)) * 0.4,
            p + "self_attn.o_proj.weight": rng.normal(size=(d, heads * e)) * 0.4,
            p + "mlp.gate_proj.weight": rng.normal(size=(ff, d)) * 0.4,
            p + "mlp.up_proj.weight": rng.normal(size=(ff, d)) * 0.4,
            p + "mlp.down_proj.weight": rng.normal(size=(d, ff)) * 0.4,
        }
        if biases:
            tensors |= {
                p + "self_attn.q_proj.bias": rng.normal(size=heads * e) * 0.1,
                p + "self_attn.k_proj.bias": rng.normal(size=kv * e) * 0.1,
                p + "self_attn.v_proj.bias": rng.normal(size=kv * e) * 0.1,
            }
    config = {
        "model_type": model_type, "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
        "rope_theta": 1000.0, "tie_word_embeddings": tied, "hidden_act": "silu",
    }  # fmt: skip
    save(folder, config, {k: v.astype(dtype) for k, v in tensors.items()})
    return tensors


def llama_config(model_type="llama", vocab=20, d=16, layers=2, heads=4, kv=2, ff=12, **extra):
    """A Llama-family ``config.json`` of these sizes and the ``extra`` keys (a key given as
    None is left out, so HF's default applies)."""
    config = {
        "model_type": model_type, "vocab_size": vocab, "hidden_size": d, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
    }  # fmt: skip
    return {k: v for k, v in (config | extra).items() if v is not None}


def llama_tensors(
    rng, vocab=20, d=16, layers=2, heads=4, kv=2, ff=12, head=True, biases=False, e=None
):
    """Random Llama tensors in HF's layout (linear weights ``[out, in]``); heads of width ``e``
    (default ``d // heads``)."""
    e = d // heads if e is None else e
    tensors = {"model.embed_tokens.weight": rng.normal(size=(vocab, d)),
               "model.norm.weight": 1 + 0.3 * rng.normal(size=d)}  # fmt: skip
    if head:
        tensors["lm_head.weight"] = 0.5 * rng.normal(size=(vocab, d))
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": 1 + 0.3 * rng.normal(size=d),
            p + "post_attention_layernorm.weight": 1 + 0.3 * rng.normal(size=d),
            p + "self_attn.q_proj.weight": 0.5 * rng.normal(size=(heads * e, d)),
            p + "self_attn.k_proj.weight": 0.5 * rng.normal(size=(kv * e, d)),
            p + "self_attn.v_proj.weight": 0.5 * rng.normal(size=(kv * e, d)),
            p + "self_attn.o_proj.weight": 0.5 * rng.normal(size=(d, heads * e)),
            p + "mlp.gate_proj.weight": 0.5 * rng.normal(size=(ff, d)),
            p + "mlp.up_proj.weight": 0.5 * rng.normal(size=(ff, d)),
            p + "mlp.down_proj.weight": 0.5 * rng.normal(size=(d, ff)),
        }
        if biases:
            tensors |= {
                p + "self_attn.q_proj.bias": rng.normal(size=heads * e),
                p + "self_attn.k_proj.bias": rng.normal(size=kv * e),
                p + "self_attn.v_proj.bias": rng.normal(size=kv * e),
            }
    return tensors


#: The vocabulary of `word_checkpoint`: id 1, ``</s>``, is its EOS id.
WORDS = ["[UNK]", "</s>", "the", "cat", "dog", "sat", "on", "mat", "a", "log", "saw", "ran"]


def word_checkpoint(folder):
    """A Llama checkpoint over the 12 `WORDS` with a matching WordLevel tokenizer; returns
    the words."""
    tokenizers = pytest.importorskip("tokenizers")
    words = list(WORDS)
    inner = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    )
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    inner.decoder = tokenizers.decoders.WordPiece()
    write_llama(folder, np.random.default_rng(11), vocab=len(words))
    config = json.loads((folder / "config.json").read_text()) | {"eos_token_id": 1}
    (folder / "config.json").write_text(json.dumps(config))
    inner.save(str(folder / "tokenizer.json"))
    return words


# -- tokenizers ----------------------------------------------------------------------------------

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "In 2024, 17 people ate 350 apples; 1234567 is a number.",
    "Héllo wörld, naïve café — ünïcödé text! 日本語のテキスト.",
    "def f(x):\n    return x  # code\n\tindented\n\n\nblank lines",
] * 20

SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}"
)


def train_bpe():
    """A byte-level BPE trained on ``CORPUS`` (GPT-2's pre-tokenizer), special tokens first."""
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer(tokenizers.models.BPE())
    inner.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    inner.train_from_iterator(CORPUS, trainer)
    return inner


def folder_with(tmp_path, inner, config=None, post=True, files=()):
    """A checkpoint folder with this tokenizer.json (``<s> $A`` post-processor if ``post``),
    tokenizer_config.json ``config`` and extra ``files``."""
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer.from_str(inner.to_str())
    if post:
        inner.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", inner.token_to_id("<s>"))]
        )
    tmp_path.mkdir(parents=True, exist_ok=True)
    inner.save(str(tmp_path / "tokenizer.json"))
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    for name, text in files:
        (tmp_path / name).write_text(text)
    return tmp_path


def write_gguf_tokenizer(
    path, inner, pre, add_bos=False, template=CHATML, model="gpt2", tokens=True, merges=True
):
    """``inner``'s vocabulary and merges as GGUF metadata, special tokens marked control; without
    ``tokenizer.ggml.pre`` when ``pre`` is None, without the token list or the merges when
    ``tokens`` or ``merges`` is False."""
    gguf = pytest.importorskip("gguf")
    state = json.loads(inner.to_str())
    vocab = state["model"]["vocab"]
    vocabulary = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    pairs = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    if tokens:
        writer.add_token_list(vocabulary)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in vocabulary])
    if merges:
        writer.add_token_merges(pairs)
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_eot_token_id(vocab["</s>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(add_bos)
    writer.add_sampling_temp(0.7)
    writer.add_sampling_top_k(40)
    if template is not None:
        writer.add_chat_template(template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_gguf_vocabulary(path, tokens, merges, pre="gpt-2", types=None, metadata=()):
    """A GGUF holding a tokenizer written by hand: ``tokens`` (of ``types``, when given; GGUF's
    1 normal, 2 unknown, 3 control, 4 user-defined), ``merges`` ('left right') and the
    pre-tokenizer type, plus the ``metadata`` pairs (key, value) as written: a bool, an int
    (uint32) or a str. Nothing else: no BOS/EOS ids or flags unless ``metadata`` has them."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if types is not None:
        writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, value in dict(metadata).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- GGUF files ----------------------------------------------------------------------------------
# HF tensor names renamed, the query and key rows of ``llama`` files permuted per head, tensors
# stored in a chosen ggml type (quantised with ``gguf.quants``; K-quants, which ``gguf`` cannot
# quantise, from random blocks with sane scales).

LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


TOP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(name: str) -> str:
    """llama.cpp's name for HF tensor ``name``."""
    if name in TOP:
        return TOP[name]
    _, _, layer, rest = name.split(".", 3)
    return f"blk.{layer}.{LAYER[rest]}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` of query/key rows (rotate-half pairs made adjacent)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


#: Byte offsets of the float16 scales in a block of each K-quant type.
K_QUANT_SCALES = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def encode(values: np.ndarray, qtype, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(what the writer stores, the float32 values a reader must get back)``."""
    gguf = pytest.importorskip("gguf")
    Q = gguf.GGMLQuantizationType
    values = np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F32:
        return values, values
    if qtype == Q.F16:
        stored = values.astype(np.float16)
        return stored, stored.astype(np.float32)
    if qtype.name in K_QUANT_SCALES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        rows, columns = values.shape
        blocks = rng.integers(
            0, 256, size=(rows * columns // block_size, type_size), dtype=np.uint8
        )
        low, high = (1e-4, 1e-3) if qtype == Q.Q6_K else (0.002, 0.02)  # Q6_K: int8 scales
        for offset in K_QUANT_SCALES[qtype.name]:
            scale = rng.uniform(low, high, size=len(blocks)).astype(np.float16)
            blocks[:, offset : offset + 2] = scale.view(np.uint8).reshape(-1, 2)
        stored = blocks.reshape(rows, -1)
    else:
        stored = gguf.quants.quantize(values, qtype)
    return stored, gguf.quants.dequantize(stored, qtype).reshape(values.shape)


def write_gguf(path, arch: str, config: dict, tensors: dict, qtype=None, rng=None, metadata=()):
    """Write ``tensors`` (HF names, float arrays) as a GGUF of ``arch``; 2-D weights in
    ``qtype`` (default F32; 1-D ones always F32). Returns the float32 values a reader must
    return per HF name (dequantised and, for ``llama``, un-permuted)."""
    gguf = pytest.importorskip("gguf")
    Q = gguf.GGMLQuantizationType
    qtype = Q.F32 if qtype is None else qtype
    rng = np.random.default_rng(0) if rng is None else rng
    writer = gguf.GGUFWriter(str(path), arch)
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings", 64))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    head_dim = config.get("head_dim", config["hidden_size"] // heads)
    writer.add_rope_dimension_count(head_dim)
    if "head_dim" in config:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    for key, value in metadata:
        writer.add_key_value(key, value[0], value[1])
    expected = {}
    for name, array in tensors.items():
        heads_of = {"q_proj": heads, "k_proj": kv}
        proj = name.split(".")[-2] if "self_attn" in name else ""
        stored_values = np.asarray(array, dtype=np.float32)
        if arch == "llama" and proj in heads_of:
            stored_values = permute(stored_values, heads_of[proj])
        kind = qtype if stored_values.ndim == 2 else Q.F32
        stored, back = encode(stored_values, kind, rng)
        writer.add_tensor(
            gguf_name(name), stored, raw_dtype=kind if kind not in (Q.F32, Q.F16) else None
        )
        if arch == "llama" and proj in heads_of:  # undo the permutation: back in HF's order
            e = back.shape[0] // heads_of[proj]
            back = back.reshape(heads_of[proj], e // 2, 2, *back.shape[1:]).swapaxes(1, 2)
            back = back.reshape(stored_values.shape)
        expected[name] = back
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected
