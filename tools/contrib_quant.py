"""Cases for onnxruntime's block-quantized ops: MatMulNBits (2/4/8 bits, blocks of 16 to 128,
packed uint8 or float zero points or none, bias, K not a multiple of the block, 1-D to 3-D A,
float16, B as a graph input) and GatherBlockQuantized (4/8 bits, zero points or none, int32
and int64 indices, negative indices, rank-3 tables, a short last block, float16 scales).
Read by tools/contrib_cases.py."""

from __future__ import annotations

import numpy as np

from contrib_cases import Case, one_node


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """`codes` (last axis a multiple of 8 / bits) packed low bits first along the last axis."""
    per = 8 // bits
    c = codes.astype(np.uint8).reshape(*codes.shape[:-1], -1, per)
    out = np.zeros(c.shape[:-1], np.uint8)
    for j in range(per):
        out |= c[..., j] << (j * bits)
    return out


def packed_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """`values` padded with zero codes to whole bytes along the last axis, then packed."""
    per = 8 // bits
    pad = (-values.shape[-1]) % per
    return pack(np.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, pad)]), bits)


def matmul_nbits(name, k, n, bits, block, a_shape, zp="packed", bias=False, dtype=np.float32, b_input=False, seed=0):
    """One MatMulNBits case; `zp` is "packed" (uint8), "float" (scales' type) or None."""
    rng = np.random.default_rng(seed)
    kb = -(-k // block)
    codes = rng.integers(0, 1 << bits, (n, kb, block))
    b = pack(codes, bits)
    scales = (rng.uniform(0.005, 0.05, (n, kb)) * rng.choice([-1, 1], (n, kb))).astype(dtype)
    a = rng.uniform(-1, 1, a_shape).astype(dtype)
    feeds, consts = {"A": a}, {}
    (feeds if b_input else consts).update({"B": b, "scales": scales})
    inputs = ["A", "B", "scales"]
    if zp == "packed":
        consts["zero_points"] = packed_rows(rng.integers(0, 1 << bits, (n, kb)), bits)
    elif zp == "float":
        consts["zero_points"] = rng.uniform(0, (1 << bits) - 1, (n, kb)).astype(dtype)
    inputs.append("zero_points" if zp else "")
    if bias:
        consts["bias"] = rng.uniform(-1, 1, n).astype(dtype)
        inputs += ["", "bias"]
    model = one_node("MatMulNBits", inputs, feeds, consts, [("Y", dtype, (*a_shape[:-1], n))], K=k, N=n, bits=bits, block_size=block)
    f16 = dtype == np.float16
    return Case(name, model, list(feeds.values()), rtol=2e-3 if f16 else 1e-4, atol=2e-3 if f16 else 1e-4)


def gather_block_quantized(name, shape, bits, block, zp=True, ids=((0, 3), (-1, 2)), index=np.int64, dtype=np.float32, seed=0):
    """One GatherBlockQuantized case over a table of logical shape `shape` (last axis quantized)."""
    rng = np.random.default_rng(seed)
    *lead, d = shape
    nb = -(-d // block)
    data = packed_rows(rng.integers(0, 1 << bits, shape), bits)
    scales = rng.uniform(0.01, 0.1, (*lead, nb)).astype(dtype)
    consts = {"data": data, "scales": scales}
    inputs = ["data", "indices", "scales"]
    if zp:
        consts["zero_points"] = packed_rows(rng.integers(0, 1 << bits, (*lead, nb)), bits)
        inputs.append("zero_points")
    feeds = {"indices": np.array(ids, index)}
    out = ("Y", dtype, (*feeds["indices"].shape, *shape[1:]))
    model = one_node("GatherBlockQuantized", inputs, feeds, consts, [out],
                     bits=bits, block_size=block, gather_axis=0, quantize_axis=len(shape) - 1)
    return Case(name, model, [feeds["indices"]], rtol=1e-3 if dtype == np.float16 else 1e-6, atol=1e-6)


def cases() -> list:
    return [
        matmul_nbits("ms_matmulnbits_q4_b32_zp", 64, 24, 4, 32, (3, 64)),
        matmul_nbits("ms_matmulnbits_q4_b16_no_zp_3d", 48, 16, 4, 16, (2, 5, 48), zp=None),
        matmul_nbits("ms_matmulnbits_q4_b32_k40_bias", 40, 8, 4, 32, (4, 40), bias=True),
        matmul_nbits("ms_matmulnbits_q4_b128_float_zp", 256, 16, 4, 128, (2, 256), zp="float"),
        matmul_nbits("ms_matmulnbits_q4_b32_gemv", 128, 40, 4, 32, (1, 128), bias=True),
        matmul_nbits("ms_matmulnbits_q4_b32_1d", 64, 8, 4, 32, (64,)),
        matmul_nbits("ms_matmulnbits_q4_b64_wide", 256, 160, 4, 64, (2, 9, 256), bias=True),
        matmul_nbits("ms_matmulnbits_q8_b32_zp_bias_3d", 96, 20, 8, 32, (2, 3, 96), bias=True),
        matmul_nbits("ms_matmulnbits_q8_b16_k70_no_zp", 70, 12, 8, 16, (5, 70), zp=None),
        matmul_nbits("ms_matmulnbits_q8_b128_k200", 200, 16, 8, 128, (3, 200)),
        matmul_nbits("ms_matmulnbits_q2_b16_zp", 64, 8, 2, 16, (3, 64)),
        matmul_nbits("ms_matmulnbits_q4_f16_zp_bias", 64, 16, 4, 32, (3, 64), bias=True, dtype=np.float16),
        matmul_nbits("ms_matmulnbits_q8_f16_no_zp", 48, 16, 8, 16, (2, 2, 48), zp=None, dtype=np.float16),
        matmul_nbits("ms_matmulnbits_q4_b_input", 64, 12, 4, 32, (3, 64), b_input=True),
        gather_block_quantized("ms_gatherblockquantized_q4_zp", (10, 64), 4, 32),
        gather_block_quantized("ms_gatherblockquantized_q4_no_zp_int32", (7, 32), 4, 16, zp=False, ids=(6, -7, 0), index=np.int32),
        gather_block_quantized("ms_gatherblockquantized_q4_short_block", (5, 48), 4, 32, ids=((4,), (1,))),
        gather_block_quantized("ms_gatherblockquantized_q8_zp", (9, 48), 8, 16, ids=(8, 0, -2)),
        gather_block_quantized("ms_gatherblockquantized_q8_no_zp", (4, 40), 8, 32, zp=False, ids=(3,)),
        gather_block_quantized("ms_gatherblockquantized_q4_rank3", (6, 3, 32), 4, 16, ids=((5, 0),)),
        gather_block_quantized("ms_gatherblockquantized_q4_f16", (8, 64), 4, 64, dtype=np.float16, ids=(1, 7)),
        gather_block_quantized("ms_gatherblockquantized_q2_zp", (6, 64), 2, 32, ids=(2, 5)),
    ]
