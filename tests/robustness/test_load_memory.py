"""What `load_model` allocates, per architecture and file type, against the bytes of the
float32 model it returns (traced with tracemalloc; memory-mapped file pages are not
allocations, and are handed back as conversions read them).

A tensor already float32 in the layout the model reads stays in the mapped file; any other is
built once in its final dtype and layout, one 1 MiB chunk at a time. So the peak is what the
model keeps outside the file plus one chunk's temporaries: at most 1.1x the model's bytes, and
the temporaries at most 4 MiB whatever the model's size (docs/guarantees.md, "Memory").
"""

from __future__ import annotations

import functools
import json
import tracemalloc

import attrs
import numpy as np
import pytest

import decoding

from .hostile_files import float_entries, safetensors_bytes
from checkpoints import write_gguf

Q = pytest.importorskip("gguf").GGMLQuantizationType

V, D, H, G, F, L = 8000, 256, 4, 2, 768, 4  # a 29 MB float32 Llama (21 MB tied)


def llama(tied):
    rng = np.random.default_rng(0)
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not tied:
        shapes["lm_head.weight"] = (V, D)
    for i in range(L):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
            p + "self_attn.q_proj.weight": (D, D), p + "self_attn.k_proj.weight": (D // 2, D),
            p + "self_attn.v_proj.weight": (D // 2, D), p + "self_attn.o_proj.weight": (D, D),
            p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
            p + "mlp.down_proj.weight": (D, F),
        }  # fmt: skip
    tensors = {k: (rng.normal(size=s) * 0.05).astype(np.float32) for k, s in shapes.items()}
    config = {
        "model_type": "llama", "vocab_size": V, "hidden_size": D, "intermediate_size": F,
        "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": G,
        "max_position_embeddings": 64, "tie_word_embeddings": tied,
    }  # fmt: skip
    return config, tensors


def gpt2(tied=True):
    rng = np.random.default_rng(1)
    shapes = {"wte.weight": (V, D), "wpe.weight": (256, D), "ln_f.weight": (D,),
              "ln_f.bias": (D,)}  # fmt: skip
    if not tied:  # nn.Linear [V, D], read as its [D, V] transpose
        shapes["lm_head.weight"] = (V, D)
    for i in range(L):
        shapes |= {
            f"h.{i}.{k}": s
            for k, s in {
                "ln_1.weight": (D,), "ln_1.bias": (D,), "attn.c_attn.weight": (D, 3 * D),
                "attn.c_attn.bias": (3 * D,), "attn.c_proj.weight": (D, D),
                "attn.c_proj.bias": (D,), "ln_2.weight": (D,), "ln_2.bias": (D,),
                "mlp.c_fc.weight": (D, 4 * D), "mlp.c_fc.bias": (4 * D,),
                "mlp.c_proj.weight": (4 * D, D), "mlp.c_proj.bias": (D,),
            }.items()
        }  # fmt: skip
    tensors = {k: (rng.normal(size=s) * 0.05).astype(np.float32) for k, s in shapes.items()}
    config = {"model_type": "gpt2", "vocab_size": V, "n_embd": D, "n_head": H, "n_layer": L,
              "n_positions": 256, "tie_word_embeddings": tied}  # fmt: skip
    return config, tensors


def bf16_entries(tensors):
    bits = {k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in tensors.items()}
    return {k: ("BF16", v.shape, v.tobytes()) for k, v in bits.items()}


def folder(path, config, entries):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(safetensors_bytes(entries))
    return path


def _with(config_and_tensors, entries):
    config, tensors = config_and_tensors
    return config, entries(tensors)


def _gguf(path, qtype):
    config, tensors = llama(False)
    config |= {"rms_norm_eps": 1e-6, "rope_theta": 10000.0}
    write_gguf(path.with_suffix(".gguf"), "llama", config, tensors, qtype)
    return path.with_suffix(".gguf")


CASES = {
    "gpt2 folder float32": lambda p: folder(p, *_with(gpt2(), float_entries)),
    "gpt2 folder float32 untied": lambda p: folder(p, *_with(gpt2(False), float_entries)),
    "llama folder float32": lambda p: folder(p, *_with(llama(False), float_entries)),
    "llama folder float32 tied": lambda p: folder(p, *_with(llama(True), float_entries)),
    "llama folder bfloat16": lambda p: folder(p, *_with(llama(False), bf16_entries)),
    "llama folder bfloat16 tied": lambda p: folder(p, *_with(llama(True), bf16_entries)),
    **{
        f"gguf {q.name}": functools.partial(_gguf, qtype=q)
        for q in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_K)
    },
}


@pytest.mark.no_blas_noise
@pytest.mark.parametrize("case", CASES)
def test_a_load_allocates_at_most_1_1x_the_model_and_4_mib_of_temporaries(case, tmp_path):
    path = CASES[case](tmp_path / "m")
    tracemalloc.start()
    model = decoding.load_model(path)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(a.nbytes for a in _arrays(model.weights))  # the float32 model's bytes
    assert model.dtype == np.float32
    assert peak <= 1.1 * size, (peak / size, size)
    assert peak - kept <= 4 << 20, (peak - kept) / 2**20


def _arrays(record):
    """Every distinct array base in a weights record (a tied head shares the embedding)."""
    seen, out = set(), []

    def visit(value):
        if isinstance(value, np.ndarray):
            base = value
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in seen:
                seen.add(id(base))
                out.append(base)
        elif attrs.has(type(value)):
            for field in attrs.fields(type(value)):
                visit(getattr(value, field.name))
        elif isinstance(value, tuple):
            for item in value:
                visit(item)

    visit(record)
    return out


def _merged(ranges):
    """Byte ranges ``(start, stop)`` merged where they touch or overlap, in order."""
    out = []
    for start, stop in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def test_a_quantised_gguf_hands_back_exactly_the_bytes_of_every_tensor_it_converts(
    tmp_path, monkeypatch
):
    """Each converted chunk's bytes are handed back as it is read: taken together, the ranges
    released are the byte ranges of the tensors built from the file (the Q8_0 weights, the
    permuted query/key ones among them); the float32 norms stay views and are not."""
    from decoding.lm.loading._common import MappedFile
    from decoding.lm.loading.gguf_files import GGUFFile

    config = {
        "model_type": "llama", "vocab_size": 40, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
    }  # fmt: skip
    rng = np.random.default_rng(3)
    shapes = {"model.embed_tokens.weight": (40, 64), "model.norm.weight": (64,),
              "lm_head.weight": (40, 64), "model.layers.0.input_layernorm.weight": (64,),
              "model.layers.0.post_attention_layernorm.weight": (64,),
              "model.layers.0.self_attn.q_proj.weight": (64, 64),
              "model.layers.0.self_attn.k_proj.weight": (32, 64),
              "model.layers.0.self_attn.v_proj.weight": (32, 64),
              "model.layers.0.self_attn.o_proj.weight": (64, 64),
              "model.layers.0.mlp.gate_proj.weight": (96, 64),
              "model.layers.0.mlp.up_proj.weight": (96, 64),
              "model.layers.0.mlp.down_proj.weight": (64, 96)}  # fmt: skip
    tensors = {k: rng.normal(size=s) * 0.1 for k, s in shapes.items()}
    path = tmp_path / "q.gguf"
    write_gguf(path, "llama", config, tensors, Q.Q8_0)
    released = []
    original = MappedFile.release

    def release(self, start, stop):
        released.append((start, stop))
        original(self, start, stop)

    monkeypatch.setattr(MappedFile, "release", release)
    decoding.load_model(path)
    file = GGUFFile(path)
    # Q8_0: 34 bytes for each 32 values of a row
    built = [(t.offset, t.offset + 34 * t.shape[0] * t.shape[1] // 32)
             for t in file.tensors.values() if len(t.shape) == 2]  # fmt: skip
    assert len(built) == 9
    assert _merged(released) == _merged(built)


@pytest.mark.no_blas_noise
def test_a_permuted_gguf_weight_is_un_permuted_with_one_float32_copy_of_temporaries(tmp_path):
    """A ``llama`` GGUF's query/key weight is read whole into float32 and un-permuted into the
    model's copy: besides what the model keeps, one float32 copy of the weight at a time (the
    other weights, float32 in the file, stay views of it)."""
    d = 512  # every 2-D weight but the 8-row ones [d, d]: 1 MiB in float32
    config = {
        "model_type": "llama", "vocab_size": 8, "hidden_size": d, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
    }  # fmt: skip
    shapes = {"model.embed_tokens.weight": (8, d), "model.norm.weight": (d,),
              "lm_head.weight": (8, d), "model.layers.0.input_layernorm.weight": (d,),
              "model.layers.0.post_attention_layernorm.weight": (d,),
              "model.layers.0.mlp.gate_proj.weight": (8, d),
              "model.layers.0.mlp.up_proj.weight": (8, d),
              "model.layers.0.mlp.down_proj.weight": (d, 8)}  # fmt: skip
    shapes |= {f"model.layers.0.self_attn.{x}_proj.weight": (d, d) for x in "qkvo"}
    rng = np.random.default_rng(4)
    tensors = {k: (rng.normal(size=s) * 0.1).astype(np.float32) for k, s in shapes.items()}
    write_gguf(tmp_path / "p.gguf", "llama", config, tensors)
    tracemalloc.start()
    model = decoding.load_model(tmp_path / "p.gguf")
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    weight = d * d * 4
    assert model.weights.blocks[0].q_w_DX.dtype == np.float32
    assert peak - kept <= 1.5 * weight, (peak - kept) / weight


def test_handing_pages_back_is_a_no_op_where_the_mapping_has_no_madvise(tmp_path):
    """Windows' mmap objects have no ``madvise``: `MappedFile.release` then does nothing."""
    import mmap

    from decoding.lm.loading._common import MappedFile

    path = tmp_path / "pages"
    path.write_bytes(b"\x01" * (3 * mmap.PAGESIZE))
    mapped = MappedFile(path)
    mapped.map.close()
    mapped.map = b"\x01" * mapped.size  # the same bytes, read like a mapping, no madvise
    mapped.release(0, mapped.size)
    assert mapped.array(mmap.PAGESIZE, np.dtype(np.uint8), 4).tolist() == [1, 1, 1, 1]


# --- MappedFile.release: which pages it hands back ---


class _Advice:
    """Stands in for the mapping: records each madvise call."""

    def __init__(self):
        self.calls = []

    def madvise(self, *args):
        self.calls.append(args)


def _mapped_with_advice(tmp_path, pages):
    import mmap

    from decoding.lm.loading._common import MappedFile

    path = tmp_path / "weights.bin"
    path.write_bytes(b"\1" * (pages * mmap.PAGESIZE))
    mapped = MappedFile(path)
    mapped.map.close()
    mapped.map = _Advice()
    return mapped


def test_release_hands_back_only_the_whole_pages_inside_the_range(tmp_path):
    import mmap

    if not hasattr(mmap, "MADV_DONTNEED"):
        pytest.skip("no MADV_DONTNEED here")
    page = mmap.PAGESIZE
    mapped = _mapped_with_advice(tmp_path, 4)
    # Bytes [1, 3 pages + 5): pages 1 and 2 lie wholly inside; 0 and 3 only in part.
    mapped.release(1, 3 * page + 5)
    assert mapped.map.calls == [(mmap.MADV_DONTNEED, page, 2 * page)]
    # Bytes [page + 1, 2 pages + 1) hold no whole page: nothing is handed back.
    mapped.release(page + 1, 2 * page + 1)
    assert mapped.map.calls == [(mmap.MADV_DONTNEED, page, 2 * page)]


def test_release_is_a_no_op_without_madv_dontneed(tmp_path, monkeypatch):
    import mmap

    mapped = _mapped_with_advice(tmp_path, 4)
    monkeypatch.delattr(mmap, "MADV_DONTNEED", raising=False)
    mapped.release(0, 4 * mmap.PAGESIZE)
    assert mapped.map.calls == []


# --- build: the row chunks it reads (CHUNK_BYTES = 1 MiB of float32 at a time, at least a row)


def _chunks_read(rows, columns, transpose=False):
    from decoding.lm.loading._common import build

    asked, released = [], []

    def read(first, stop):
        asked.append((first, stop))
        return np.arange(first * columns, stop * columns, dtype=np.float32).reshape(-1, columns)

    out = build(rows, columns, read, np.dtype(np.float32), transpose, lambda *r: released.append(r))
    whole = np.arange(rows * columns, dtype=np.float32).reshape(rows, columns)
    np.testing.assert_array_equal(out, whole.T if transpose else whole)
    assert released == asked
    return asked


def test_build_reads_a_mebibyte_of_float32_rows_at_a_time():
    # 1024 columns: 2**20 // (4 * 1024) = 256 rows a chunk.
    assert _chunks_read(600, 1024) == [(0, 256), (256, 512), (512, 600)]
    assert _chunks_read(300, 1024, transpose=True) == [(0, 256), (256, 300)]
    # One column: 2**20 // 4 = 262144 rows a chunk.
    assert _chunks_read(262145, 1) == [(0, 262144), (262144, 262145)]
    # A row wider than a mebibyte (262145 float32) is read alone.
    assert _chunks_read(3, 262145) == [(0, 1), (1, 2), (2, 3)]
