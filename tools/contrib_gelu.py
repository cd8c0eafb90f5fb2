"""Cases for onnxruntime's GELU family: Gelu (erf), FastGelu (tanh, with and without bias),
BiasGelu, QuickGelu (default and explicit alpha), in float32, float16 and (where onnxruntime
has them) float64. Read by tools/contrib_cases.py."""

from __future__ import annotations

import numpy as np

from contrib_cases import Case, one_node


def gelu(name, op, bias=False, dtype=np.float32, shape=(2, 3, 40), seed=0, **attrs):
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.uniform(-6, 6, shape).astype(dtype)}
    consts = {"bias": rng.uniform(-1, 1, shape[-1:]).astype(dtype)} if bias else {}
    model = one_node(op, list(feeds) + list(consts), feeds, consts, [("Y", dtype, shape)], **attrs)
    tol = {"rtol": 2e-3, "atol": 2e-3} if dtype == np.float16 else {"rtol": 1e-4, "atol": 1e-5}
    return Case(name, model, list(feeds.values()), **tol)


def cases() -> list:
    f16, f64 = np.float16, np.float64
    return [
        gelu("ms_gelu", "Gelu"),
        gelu("ms_gelu_f16", "Gelu", dtype=f16),
        gelu("ms_fastgelu", "FastGelu"),
        gelu("ms_fastgelu_bias", "FastGelu", bias=True),
        gelu("ms_fastgelu_bias_f16", "FastGelu", bias=True, dtype=f16),
        gelu("ms_fastgelu_f64", "FastGelu", dtype=f64),
        gelu("ms_biasgelu", "BiasGelu", bias=True),
        gelu("ms_biasgelu_f16", "BiasGelu", bias=True, dtype=f16, shape=(4, 24)),
        gelu("ms_quickgelu", "QuickGelu"),
        gelu("ms_quickgelu_alpha", "QuickGelu", alpha=1.0, shape=(50,)),
        gelu("ms_quickgelu_f16", "QuickGelu", dtype=f16),
    ]
