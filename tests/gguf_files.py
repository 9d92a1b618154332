"""Writing small GGUF files for the tests, the way llama.cpp's converter writes them: HF tensor
names renamed, the query and key rows of ``llama`` files permuted per head, tensors stored in a
chosen ggml type (quantised with ``gguf.quants``; K-quants, which ``gguf`` cannot quantise,
from random blocks with sane scales)."""

from __future__ import annotations

import numpy as np

gguf = __import__("pytest").importorskip("gguf")
Q = gguf.GGMLQuantizationType

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


K_QUANT_SCALES = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}  # byte offsets of f16 scales


def encode(values: np.ndarray, qtype, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(what the writer stores, the float32 values a reader must get back)``."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F32:
        return values, values
    if qtype == Q.F16:
        stored = values.astype(np.float16)
        return stored, stored.astype(np.float32)
    if qtype in K_QUANT_SCALES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        rows, columns = values.shape
        blocks = rng.integers(
            0, 256, size=(rows * columns // block_size, type_size), dtype=np.uint8
        )
        low, high = (1e-4, 1e-3) if qtype == Q.Q6_K else (0.002, 0.02)  # Q6_K: int8 scales
        for offset in K_QUANT_SCALES[qtype]:
            scale = rng.uniform(low, high, size=len(blocks)).astype(np.float16)
            blocks[:, offset : offset + 2] = scale.view(np.uint8).reshape(-1, 2)
        stored = blocks.reshape(rows, -1)
    else:
        stored = gguf.quants.quantize(values, qtype)
    return stored, gguf.quants.dequantize(stored, qtype).reshape(values.shape)


def write(path, arch: str, config: dict, tensors: dict, qtype=Q.F32, rng=None, metadata=()):
    """Write ``tensors`` (HF names, float arrays) as a GGUF of ``arch``; 2-D weights in
    ``qtype`` (1-D ones always F32). Returns the float32 values a reader must return per HF
    name (dequantised and, for ``llama``, un-permuted)."""
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
