"""onnxruntime's own 4-bit weight-only baseline of an ONNX model.

    /root/venvs/torch/bin/python tools/ort_baselines.py models/gpt2-small/optimum_past.onnx [MORE.onnx ...]

For each MODEL `<dir>/<name>.onnx` writes beside it (or in --out-dir):
  <name>.matmul.onnx         fp32 "matmul form": every Gemm(x, W, b) with a constant W (transA 0,
                             alpha = beta = 1, transB 0 or 1) becomes MatMul(x, W or W^T) + Add(b),
                             and every MatMul(x, Transpose(W)) with a constant W (the tied LM head)
                             becomes MatMul(x, W^T) with its own transposed initializer. Same
                             function; only now onnxruntime's quantizer sees the weights, since it
                             rewrites MatMul only (ONNX-EXPORTS.md).
  <name>.ort_int4.onnx       that, quantized by onnxruntime.quantization.MatMulNBitsQuantizer:
                             4 bits, block 32, symmetric, round-to-nearest (the quantizer's default
                             algorithm), accuracy_level unset (fp32 compute).
  <name>.ort_int4_acc4.onnx  the same with accuracy_level=4 (int8 activations in the kernel).
  <name>.ort_hqq.onnx        the matmul form quantized with the quantizer's HQQ algorithm: 4 bits,
                             block 32, asymmetric (uint8 zero points), accuracy_level unset.

Checks (exit 1 on failure): onnxruntime gives the same outputs on the original and the matmul form
(max |diff| < 1e-4 on every output, batch 2, seq 7, past 5 when the model takes a past), and each
quantized file has more than 0 MatMulNBits nodes. Prints what was rewritten, how many MatMuls were
quantized, file sizes, and (information only) how far the int4 logits are from fp32. Needs numpy,
onnx and onnxruntime. Works on the tiny fixtures in tests/fixtures/ too (use --out-dir there).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

np = c.require("numpy")
onnx = c.require("onnx")
ort = c.require("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

FORM_TOL = 1e-4
BLOCK_SIZE = 32
BITS = 4
# file suffix -> (accuracy_level, algorithm)
VARIANTS = {"ort_int4": (None, "rtn"), "ort_int4_acc4": (4, "rtn"), "ort_hqq": (None, "hqq")}


def baseline_paths(model: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """'matmul', 'ort_int4', 'ort_int4_acc4', 'ort_hqq' -> the files this script writes for model."""
    d = out_dir or model.parent
    stem = model.name[:-len(".onnx")] if model.name.endswith(".onnx") else model.stem
    return {k: d / f"{stem}.{k}.onnx" for k in ["matmul", *VARIANTS]}


# --------------------------------------------------------------------------- matmul form


def to_matmul_form(m) -> dict:
    """Rewrite the main graph of ModelProto m in place (see the module doc). Returns counts."""
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    taken = set(inits) | {i.name for i in g.input} | set(producer)

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def add_init(base: str, arr) -> str:
        name = fresh(base)
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    transposed: dict[tuple[str, tuple], str] = {}  # (weight, perm) -> transposed initializer

    def transposed_init(w: str, perm) -> str:
        key = (w, tuple(perm) if perm is not None else None)
        if key not in transposed:
            transposed[key] = add_init(w + "_T", np.transpose(numpy_helper.to_array(inits[w]), perm))
        return transposed[key]

    stats = {"gemm_rewritten": 0, "gemm_skipped": [], "lm_head_untied": 0}
    new_nodes = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Gemm" and n.domain in ("", "ai.onnx"):
            scaled = attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
            reason = ("transA=1" if attrs.get("transA", 0) else "alpha/beta != 1" if scaled else
                      "weight is not an initializer" if n.input[1] not in inits else None)
            if reason:
                stats["gemm_skipped"].append(f"{n.name or n.output[0]}: {reason}")
                new_nodes.append(n)
                continue
            w = transposed_init(n.input[1], (1, 0)) if attrs.get("transB", 0) else n.input[1]
            bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
            y = n.output[0]
            mm_out = fresh(y + "_matmul") if bias else y
            base = n.name or y
            new_nodes.append(helper.make_node("MatMul", [n.input[0], w], [mm_out],
                                              name=fresh(base + "_MatMul")))
            if bias:
                new_nodes.append(helper.make_node("Add", [mm_out, bias], [y], name=fresh(base + "_Add")))
            stats["gemm_rewritten"] += 1
            continue
        if n.op_type == "MatMul" and n.domain in ("", "ai.onnx") and n.input[1] in producer:
            t = producer[n.input[1]]
            if t.op_type == "Transpose" and t.input[0] in inits and len(inits[t.input[0]].dims) == 2:
                perm = next((helper.get_attribute_value(a) for a in t.attribute if a.name == "perm"), None)
                n.input[1] = transposed_init(t.input[0], perm)
                stats["lm_head_untied"] += 1
        new_nodes.append(n)
    g.ClearField("node")
    g.node.extend(new_nodes)
    _drop_dead(g)
    return stats


def _drop_dead(g) -> None:
    """Remove Transpose nodes nobody reads any more, then initializers and value_info that no
    node or graph output refers to (initializers also listed as graph inputs are kept)."""
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type == "Transpose" and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input} | outputs
    graph_inputs = {i.name for i in g.input}
    keep = [t for t in g.initializer if t.name in used or t.name in graph_inputs]
    g.ClearField("initializer")
    g.initializer.extend(keep)
    produced = {o for n in g.node for o in n.output}
    keep_vi = [v for v in g.value_info if v.name in produced]
    g.ClearField("value_info")
    g.value_info.extend(keep_vi)


# --------------------------------------------------------------------------- checks


def check_feed(session) -> dict:
    has_past = any(i.name.startswith("past_key_values.") for i in session.get_inputs())
    return c.gpt2_feed(session, batch=2, seq=7, past=5 if has_past else 0, seed=7)


def run_all(path: Path, feed: dict) -> dict:
    sess = c.ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def max_diff(a: dict, b: dict) -> float:
    if set(a) != set(b):
        c.fail(f"outputs differ: {sorted(a)} vs {sorted(b)}")
    worst = 0.0
    for k in a:
        if a[k].shape != b[k].shape:
            c.fail(f"output {k}: shape {a[k].shape} vs {b[k].shape}")
        worst = max(worst, float(np.abs(a[k].astype(np.float64) - b[k]).max()))
    return worst


def count_ops(path: Path) -> dict[str, int]:
    m = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for n in m.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def quantize(src: Path, dst: Path, accuracy_level: int | None, algorithm: str) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    hqq = HQQWeightOnlyQuantConfig(block_size=BLOCK_SIZE, bits=BITS) if algorithm == "hqq" else None
    q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=BITS, block_size=BLOCK_SIZE, is_symmetric=hqq is None,
                             accuracy_level=accuracy_level, algo_config=hqq)
    q.process()
    c.save_proto(q.model.model, dst)


def mb(path: Path) -> str:
    data = path.with_name(path.name + ".data")
    size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return f"{size / 1e6:.1f} MB"


# --------------------------------------------------------------------------- main


def make_baselines(model: Path, out_dir: Path | None) -> dict[str, Path]:
    paths = baseline_paths(model, out_dir)
    print(f"{c.rel(model)} ({mb(model)})", flush=True)
    m = onnx.load(str(model))
    stats = to_matmul_form(m)
    print(f"  matmul form: {stats['gemm_rewritten']} Gemm -> MatMul+Add, "
          f"{stats['lm_head_untied']} MatMul(x, Transpose(W)) untied", flush=True)
    for s in stats["gemm_skipped"]:
        print(f"  kept Gemm {s}")
    c.save_proto(m, paths["matmul"])
    del m

    ref_sess = c.ort_session(model)
    feed = check_feed(ref_sess)
    names = [o.name for o in ref_sess.get_outputs()]
    ref = dict(zip(names, ref_sess.run(names, feed)))
    del ref_sess
    diff = max_diff(ref, run_all(paths["matmul"], feed))
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feed.items()
                       if not k.startswith("past_key_values.") or k == "past_key_values.0.key")
    if diff >= FORM_TOL:
        c.fail(f"{c.rel(paths['matmul'])} differs from {c.rel(model)} by {diff:.3g} (>= {FORM_TOL})")
    print(f"  {c.rel(paths['matmul'])} ({mb(paths['matmul'])}): same outputs as the original, "
          f"max |diff| {diff:.2e} < {FORM_TOL} on {shapes}", flush=True)

    for variant, (level, algorithm) in VARIANTS.items():
        quantize(paths["matmul"], paths[variant], level, algorithm)
        ops = count_ops(paths[variant])
        n_q, n_left = ops.get("MatMulNBits", 0), ops.get("MatMul", 0)
        if n_q == 0:
            c.fail(f"{c.rel(paths[variant])}: the quantizer replaced no MatMul")
        got = run_all(paths[variant], feed)
        lg = "logits" if "logits" in ref else names[0]
        d = float(np.abs(got[lg] - ref[lg]).max())
        rel_rmse = float(np.sqrt(np.mean((got[lg] - ref[lg]) ** 2)) / ref[lg].std())
        print(f"  {c.rel(paths[variant])} ({mb(paths[variant])}): {n_q} MatMul quantized to MatMulNBits "
              f"(bits {BITS}, block {BLOCK_SIZE}, {'HQQ, zero points' if algorithm == 'hqq' else 'symmetric'}, "
              f"accuracy_level {level}), {n_left} MatMul left; "
              f"{lg} vs fp32: max |diff| {d:.3g}, relative RMSE {rel_rmse:.3g}", flush=True)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="ONNX files")
    ap.add_argument("--out-dir", type=Path, help="write the outputs here instead of beside each model")
    args = ap.parse_args()
    for model in args.models:
        if not model.exists():
            c.fail(f"{model} not found (GPT-2 small: tools/export_gpt2_small.py; "
                   "fixtures: tools/export_fixtures.py)")
    for model in args.models:
        make_baselines(model, args.out_dir)


if __name__ == "__main__":
    main()
