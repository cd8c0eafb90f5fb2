"""Checks `rbe-convert --emit onnx`: the emitted ONNX file in onnxruntime against `rbe-run` on
the .rbeonnx it came from, on the same inputs.

For each pair `X.rbeonnx` (ours) and `X.onnx` (emitted from it), feeds the .npy inputs of
`--inputs DIR` (or derives GPT-2 style inputs), runs onnxruntime (2 threads, default graph
optimizations) and `rbe-run --save-outputs`, and prints max |diff| and max relative diff of
every output; exits 1 when one is over `--tol` (relative to the output's largest magnitude).
With `--save-refs DIR` it also writes onnxruntime's outputs there as .npy (inputs/ and
outputs/), for committed references.

    /root/venvs/torch/bin/python tools/emit_check.py --ours X.rbeonnx --emitted X.onnx \
        [--inputs DIR | --batch 1 --seq 16] [--tol 1e-4] [--save-refs DIR] [--bench N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ORT_THREADS, REPO, gpt2_feed, require  # noqa: E402

RBE_RUN = REPO / "target" / "release" / "rbe-run"


def ort_session(path: Path):
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ORT_THREADS
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_inputs(session, args) -> dict:
    np = require("numpy")
    if args.inputs:
        return {i.name: np.load(args.inputs / f"{i.name}.npy") for i in session.get_inputs()}
    return gpt2_feed(session, args.batch, args.seq, past=args.past, seed=0)


def rbe_outputs(model: Path, feeds: dict, work: Path) -> dict:
    np = require("numpy")
    cmd = [str(RBE_RUN), str(model), "--save-outputs", str(work / "out")]
    for name, value in feeds.items():
        path = work / f"in_{len(cmd)}.npy"
        np.save(path, value)
        cmd += ["--input", f"{name}=@{path}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return {p.stem: np.load(p) for p in (work / "out").glob("*.npy")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ours", type=Path, required=True)
    p.add_argument("--emitted", type=Path, required=True)
    p.add_argument("--inputs", type=Path)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--past", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--save-refs", type=Path)
    p.add_argument("--bench", type=int, default=0, help="also time N onnxruntime runs (median ms)")
    args = p.parse_args()
    np = require("numpy")

    session = ort_session(args.emitted)
    feeds = load_inputs(session, args)
    names = [o.name for o in session.get_outputs()]
    theirs = dict(zip(names, session.run(None, feeds)))
    with tempfile.TemporaryDirectory() as tmp:
        ours = rbe_outputs(args.ours, feeds, Path(tmp))
    worst = 0.0
    result = {}
    for name in names:
        a, b = theirs[name].astype(np.float64), ours[name].astype(np.float64)
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        rel = diff / max(float(np.abs(a).max()), 1e-30) if a.size else 0.0
        worst = max(worst, rel)
        result[name] = {"max_abs_diff": diff, "rel_diff": rel, "shape": list(a.shape)}
        print(f"{name:<24} shape {list(a.shape)}  max|diff| {diff:.3g}  relative {rel:.3g}")
    if args.bench:
        session.run(None, feeds)
        times = []
        for _ in range(args.bench):
            t = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
        result["ort_median_ms"] = float(np.median(times))
        print(f"onnxruntime median {result['ort_median_ms']:.2f} ms over {args.bench} runs")
    if args.save_refs:
        for sub, values in (("inputs", feeds), ("outputs", theirs)):
            d = args.save_refs / sub
            d.mkdir(parents=True, exist_ok=True)
            for name, value in values.items():
                np.save(d / f"{name}.npy", value)
        (args.save_refs / "check.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    ok = worst <= args.tol
    print(f"{'ok' if ok else 'FAIL'}: worst relative diff {worst:.3g} (tolerance {args.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
