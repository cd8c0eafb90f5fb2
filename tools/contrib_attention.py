"""Cases for onnxruntime's attention ops: GroupQueryAttention (prompt and token steps, packed
QKV, sequences of different lengths, rotary in halves or interleaved, local window, softcap,
scale, float16), MultiHeadAttention (cross attention, key/value split into heads, packed bias,
past, unidirectional, 1-D, 2-D and 3-D key masks, mask_filter_value, attention_bias, scale,
float16), the fused Attention (input projection, bias, past, unidirectional, 1-D lengths,
end/start, 2-D and 3-D mask_index, qkv_hidden_sizes, attention_bias, float16) and the contrib
RotaryEmbedding (3-D and 4-D input, position ids or a scalar offset, partial rotary dims,
interleaved, float16). Read by tools/contrib_cases.py."""

from __future__ import annotations

import numpy as np

from contrib_cases import Case, one_node, reference_outputs

F16 = np.float16
F32 = np.float32
I32 = np.int32


def tol(dtype) -> dict:
    return {"rtol": 3e-3, "atol": 3e-3} if dtype == F16 else {"rtol": 1e-4, "atol": 2e-5}


def rotary_caches(rng, positions: int, half: int, dtype):
    angles = rng.uniform(0, 2 * np.pi, (positions, half))
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def feed_case(name, op, names, feeds, outputs, dtype, consts=None, **attrs):
    """A one-node case whose inputs `names` ("" omitted) are graph inputs from `feeds`; the
    output shapes are onnxruntime's (one run of the model without them)."""
    consts = consts or {}
    graph_feeds = {n: feeds[n] for n in names if n in feeds}
    values = list(graph_feeds.values())

    def build(shapes):
        return one_node(op, names, graph_feeds, consts, [(o, t, s) for (o, t), s in zip(outputs, shapes)], **attrs)

    shapes = [y.shape for y in reference_outputs(Case(name, build([None] * len(outputs)), values))]
    return Case(name, build(shapes), values, **tol(dtype))


def gqa(name, b=2, s=5, past=0, heads=4, kv_heads=2, head=8, packed=False, rotary=None, rotary_dim=None, shorter=0,
        dtype=F32, seed=0, **attrs):
    """`rotary` is None, "halves" or "interleaved" (over `rotary_dim`, the whole head by
    default); the first sequence has `past + s` tokens, the others `shorter` fewer."""
    rng = np.random.default_rng(seed)
    total = past + s
    feeds = {}
    if packed:
        feeds["query"] = rng.standard_normal((b, s, (heads + 2 * kv_heads) * head)).astype(dtype)
    else:
        feeds["query"] = rng.standard_normal((b, s, heads * head)).astype(dtype)
        feeds["key"] = rng.standard_normal((b, s, kv_heads * head)).astype(dtype)
        feeds["value"] = rng.standard_normal((b, s, kv_heads * head)).astype(dtype)
    if past:
        feeds["past_key"] = rng.standard_normal((b, kv_heads, past, head)).astype(dtype)
        feeds["past_value"] = rng.standard_normal((b, kv_heads, past, head)).astype(dtype)
    feeds["seqlens_k"] = np.array([total - 1] + [total - 1 - shorter] * (b - 1), I32)
    feeds["total_sequence_length"] = np.array(total, I32)
    names = [n if n in feeds else "" for n in ["query", "key", "value", "past_key", "past_value"]]
    names += ["seqlens_k", "total_sequence_length"]
    if rotary:
        feeds["cos_cache"], feeds["sin_cache"] = rotary_caches(rng, total + 3, (rotary_dim or head) // 2, dtype)
        names += ["cos_cache", "sin_cache"]
        attrs.update(do_rotary=1, rotary_interleaved=int(rotary == "interleaved"))
    outputs = [("output", dtype), ("present_key", dtype), ("present_value", dtype)]
    return feed_case(name, "GroupQueryAttention", names, feeds, outputs, dtype,
                     num_heads=heads, kv_num_heads=kv_heads, **attrs)


def padding_mask(kind, b, total, s=1):
    """onnxruntime's int32 key mask, or None: "2d" `[B, total]` 0/1, "1d" `[B]` lengths,
    "1d_start" `[2B]` ends then starts (sequence `i` has keys `i..total - i`), or "3d"
    `[B, S, total]` 0/1 per score (key 0 always kept)."""
    lengths = [total - i for i in range(b)]
    if kind == "1d":
        return np.array(lengths, I32)
    if kind == "1d_start":
        return np.array(lengths + list(range(b)), I32)
    if kind == "3d":
        i, q, j = np.indices((b, s, total))
        return (((i + q + j) % 3 != 0) | (j == 0)).astype(I32)
    mask = np.zeros((b, total), I32)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return mask if kind == "2d" else None


def given(order, feeds):
    """The node's input names in `order`, "" for those not in `feeds`, trailing ones dropped."""
    names = [n if n in feeds else "" for n in order]
    while names[-1] == "":
        names.pop()
    return names


def mha(name, b=2, s=3, kv=4, past=0, heads=2, head=8, bias=False, mask=None, attn_bias=None, bnsh=False, dtype=F32, seed=0,
        **attrs):
    """`mask` is a kind of `padding_mask` over past + kv keys, or None; `attn_bias` is
    None or the leading dims of `attention_bias` (`(1, heads)`, `(b, 1)`); `bnsh` gives key and
    value already split into heads."""
    rng = np.random.default_rng(seed)
    d = heads * head
    total = past + kv
    feeds = {"query": rng.standard_normal((b, s, d)).astype(dtype),
             "key": rng.standard_normal((b, kv, d)).astype(dtype),
             "value": rng.standard_normal((b, kv, d)).astype(dtype)}
    if bnsh:
        feeds["key"], feeds["value"] = (x.reshape(b, kv, heads, head).transpose(0, 2, 1, 3).copy() for x in (feeds["key"], feeds["value"]))
    if bias:
        feeds["bias"] = rng.uniform(-0.5, 0.5, 3 * d).astype(dtype)
    if mask:
        feeds["key_padding_mask"] = padding_mask(mask, b, total, s)
    if attn_bias:
        feeds["attention_bias"] = rng.uniform(-1, 1, (*attn_bias, s, total)).astype(dtype)
    if past:
        feeds["past_key"] = rng.standard_normal((b, heads, past, head)).astype(dtype)
        feeds["past_value"] = rng.standard_normal((b, heads, past, head)).astype(dtype)
    names = given(["query", "key", "value", "bias", "key_padding_mask", "attention_bias", "past_key", "past_value"], feeds)
    outputs = [("output", dtype)] + ([("present_key", dtype), ("present_value", dtype)] if past else [])
    return feed_case(name, "MultiHeadAttention", names, feeds, outputs, dtype, num_heads=heads, **attrs)


def attention(name, b=2, s=4, past=0, heads=2, head=8, hidden=16, qkv=None, mask=None, attn_bias=None,
              dtype=F32, seed=0, **attrs):
    """`qkv` sets qkv_hidden_sizes; `mask` is a kind of `padding_mask` over past + S keys, or None."""
    rng = np.random.default_rng(seed)
    sizes = qkv or [heads * head] * 3
    total = past + s
    consts = {"weights": (rng.standard_normal((hidden, sum(sizes))) / np.sqrt(hidden)).astype(dtype),
              "bias": rng.uniform(-0.5, 0.5, sum(sizes)).astype(dtype)}
    feeds = {"input": rng.standard_normal((b, s, hidden)).astype(dtype)}
    if mask:
        feeds["mask_index"] = padding_mask(mask, b, total, s)
    if past:
        feeds["past"] = rng.standard_normal((2, b, heads, past, head)).astype(dtype)
    if attn_bias:
        feeds["attention_bias"] = rng.uniform(-1, 1, (*attn_bias, s, total)).astype(dtype)
    names = given(["input", "weights", "bias", "mask_index", "past", "attention_bias"], {**feeds, **consts})
    if qkv:
        attrs["qkv_hidden_sizes"] = qkv
    outputs = [("output", dtype)] + ([("present", dtype)] if past else [])
    return feed_case(name, "Attention", names, feeds, outputs, dtype, consts=consts, num_heads=heads, **attrs)


def rotary(name, shape=(2, 3, 32), heads=None, dim=None, offset=None, dtype=F32, seed=0, **attrs):
    """`shape` is BSD or BNSH; `offset` replaces the position ids by a scalar start."""
    rng = np.random.default_rng(seed)
    b, s = (shape[0], shape[2]) if len(shape) == 4 else shape[:2]
    head = shape[3] if len(shape) == 4 else shape[2] // (heads or 2)
    half = (dim or head) // 2
    feeds = {"input": rng.standard_normal(shape).astype(dtype)}
    if offset is None:
        feeds["position_ids"] = rng.integers(0, 10, (b, s)).astype(np.int64)
    else:
        feeds["position_ids"] = np.array([offset], np.int64)
    feeds["cos_cache"], feeds["sin_cache"] = rotary_caches(rng, 10 + s, half, dtype)
    if heads:
        attrs["num_heads"] = heads
    if dim:
        attrs["rotary_embedding_dim"] = dim
    names = ["input", "position_ids", "cos_cache", "sin_cache"]
    return feed_case(name, "RotaryEmbedding", names, feeds, [("output", dtype)], dtype, **attrs)


def cases() -> list:
    return [
        gqa("ms_gqa_prompt"),
        gqa("ms_gqa_token_past", s=1, past=4),
        gqa("ms_gqa_continued_prompt_packed", b=1, s=3, past=3, packed=True),
        gqa("ms_gqa_packed_prompt_heads_4_1", heads=4, kv_heads=1, packed=True, s=4),
        gqa("ms_gqa_rotary_prompt", rotary="halves", head=16),
        gqa("ms_gqa_rotary_interleaved_partial_token", s=1, past=5, heads=2, kv_heads=1, head=32, rotary="interleaved", rotary_dim=16),
        gqa("ms_gqa_token_ragged_rotary", s=1, past=4, shorter=2, head=16, rotary="halves"),
        gqa("ms_gqa_local_window", b=1, s=7, local_window_size=2),
        gqa("ms_gqa_local_window_token", s=1, past=5, local_window_size=3),
        gqa("ms_gqa_softcap_scale_past", s=2, past=3, b=1, softcap=2.0, scale=0.3),
        gqa("ms_gqa_f16_token_rotary", s=1, past=3, head=16, rotary="halves", dtype=F16),
        mha("ms_mha_cross"),
        mha("ms_mha_bias_past_unidirectional", s=2, kv=2, past=3, bias=True, unidirectional=1),
        mha("ms_mha_self_unidirectional", s=4, kv=4, unidirectional=1),
        mha("ms_mha_key_padding_2d_filter", mask="2d", past=2, kv=3, mask_filter_value=-3.0),
        mha("ms_mha_key_padding_1d", mask="1d"),
        mha("ms_mha_attention_bias_scale", attn_bias=(1, 2), scale=0.2, bias=True),
        mha("ms_mha_mask_3d", mask="3d", kv=5),
        mha("ms_mha_bnsh_kv_mask", bnsh=True, mask="2d", kv=5, s=2),
        mha("ms_mha_f16_past_mask", s=1, kv=1, past=4, mask="2d", attn_bias=(2, 1), dtype=F16),
        attention("ms_attention_plain"),
        attention("ms_attention_gpt2_past_mask", s=1, past=4, mask="2d", unidirectional=1),
        attention("ms_attention_prompt_unidirectional_mask", mask="2d", unidirectional=1),
        attention("ms_attention_qkv_hidden_sizes", qkv=[16, 16, 24], mask="1d", heads=2),
        attention("ms_attention_bias_scale_filter", attn_bias=(1, 2), mask="2d", scale=0.25, mask_filter_value=-2.0),
        attention("ms_attention_mask_start_end_past", s=2, past=2, mask="1d_start"),
        attention("ms_attention_mask_3d_unidirectional", mask="3d", unidirectional=1),
        attention("ms_attention_f16_past", s=2, past=3, unidirectional=1, dtype=F16),
        rotary("ms_rotary_3d_positions"),
        rotary("ms_rotary_3d_partial_interleaved", shape=(1, 4, 32), heads=2, dim=8, interleaved=1),
        rotary("ms_rotary_4d_offset", shape=(2, 2, 3, 8), offset=4),
        rotary("ms_rotary_f16_offset_heads", shape=(1, 2, 24), heads=2, offset=1, dtype=F16),
    ]
