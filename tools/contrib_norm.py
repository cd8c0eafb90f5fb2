"""Cases for onnxruntime's normalizations: SkipLayerNormalization and
SkipSimplifiedLayerNormalization (with and without beta and bias, every optional output, a
broadcast skip, 2-D input, float16) and SimplifiedLayerNormalization (default domain: axis,
epsilon, the inverse-RMS output, float16 input and/or scale). Read by tools/contrib_cases.py."""

from __future__ import annotations

import numpy as np

from contrib_cases import Case, one_node

F32 = np.float32


def tol(dtype) -> dict:
    return {"rtol": 2e-3, "atol": 2e-3} if dtype == np.float16 else {"rtol": 1e-4, "atol": 1e-5}


def skip_norm(name, simplified, shape=(2, 3, 16), skip_shape=None, beta=True, bias=True, outputs=4, dtype=F32, seed=0):
    """`outputs` is how many outputs the node declares; a 4-output node with `outputs="sum"`
    keeps only the first and the residual sum."""
    rng = np.random.default_rng(seed)
    h = shape[-1]
    feeds = {"input": rng.standard_normal(shape).astype(dtype) * 2 + 0.5,
             "skip": rng.standard_normal(skip_shape or shape).astype(dtype)}
    consts = {"gamma": rng.uniform(0.5, 1.5, h).astype(dtype)}
    inputs = ["input", "skip", "gamma"]
    if not simplified:
        if beta:
            consts["beta"] = rng.uniform(-0.5, 0.5, h).astype(dtype)
        inputs.append("beta" if beta else "")
    if bias:
        consts["bias"] = rng.uniform(-0.5, 0.5, h).astype(dtype)
        inputs.append("bias")
    stat = (*shape[:-1], 1)
    names = [("output", dtype, shape), ("mean", F32, stat), ("inv_std_var", F32, stat), ("input_skip_bias_sum", dtype, shape)]
    outs = [names[0], ("", F32, None), ("", F32, None), names[3]] if outputs == "sum" else names[:outputs]
    op = "SkipSimplifiedLayerNormalization" if simplified else "SkipLayerNormalization"
    model = one_node(op, inputs, feeds, consts, outs, epsilon=1e-5)
    return Case(name, model, list(feeds.values()), **tol(dtype))


def simplified_ln(name, shape=(2, 3, 16), axis=-1, scale_shape=None, outputs=2, dtype=F32, scale_dtype=None, epsilon=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    scale_dtype = scale_dtype or dtype
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    scale = rng.uniform(0.5, 1.5, scale_shape or shape[-1:]).astype(scale_dtype)
    stat = tuple(d if i < axis % len(shape) else 1 for i, d in enumerate(shape))
    outs = [("Y", scale_dtype, shape), ("inv_std_var", F32, stat)][:outputs]
    model = one_node("SimplifiedLayerNormalization", ["X", "scale"], {"X": x}, {"scale": scale}, outs,
                     domain="", axis=axis, epsilon=epsilon)
    return Case(name, model, [x], **tol(np.float16 if np.float16 in (dtype, scale_dtype) else F32), check=False)


def cases() -> list:
    return [
        skip_norm("ms_skiplayernorm_all_outputs", False),
        skip_norm("ms_skiplayernorm_no_beta_no_bias", False, beta=False, bias=False, outputs=1),
        skip_norm("ms_skiplayernorm_bias_no_beta_3_outputs", False, beta=False, outputs=3),
        skip_norm("ms_skiplayernorm_skip_2d_sum_only", False, skip_shape=(3, 16), outputs="sum"),
        skip_norm("ms_skiplayernorm_skip_1sh", False, skip_shape=(1, 3, 16), outputs=1),
        skip_norm("ms_skiplayernorm_input_2d", False, shape=(5, 32), outputs=4),
        skip_norm("ms_skiplayernorm_f16", False, dtype=np.float16),
        skip_norm("ms_skipsimplifiedlayernorm_all_outputs", True),
        skip_norm("ms_skipsimplifiedlayernorm_no_bias", True, bias=False, outputs=1),
        skip_norm("ms_skipsimplifiedlayernorm_skip_2d_sum_only", True, skip_shape=(3, 16), outputs="sum"),
        skip_norm("ms_skipsimplifiedlayernorm_f16", True, dtype=np.float16),
        simplified_ln("simplifiedlayernorm_last_axis"),
        simplified_ln("simplifiedlayernorm_y_only", outputs=1, epsilon=1e-2),
        simplified_ln("simplifiedlayernorm_axis1_broadcast_scale", axis=1, scale_shape=(1, 16)),
        simplified_ln("simplifiedlayernorm_f16", dtype=np.float16),
        simplified_ln("simplifiedlayernorm_f16_x_f32_scale", dtype=np.float16, scale_dtype=F32),
        simplified_ln("simplifiedlayernorm_f32_x_f16_scale", scale_dtype=np.float16),
    ]
