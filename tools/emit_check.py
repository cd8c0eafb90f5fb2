"""Checks `rbe-convert --emit onnx`: the emitted ONNX file in onnxruntime against `rbe-run` on
the .rbeonnx it came from, on the same inputs.

For each pair `X.rbeonnx` (ours) and `X.onnx` (emitted from it), feeds the .npy inputs of
`--inputs DIR` (or derives GPT-2 style inputs), runs onnxruntime (2 threads, default graph
optimizations) and `rbe-run --save-outputs`, and prints max |diff| and max relative diff of
every output; exits 1 when one is over `--tol` (relative to the output's largest magnitude).
With `--save-refs DIR` it also writes onnxruntime's outputs there as .npy (inputs/ and
outputs/), for committed references. Any two files with the same inputs can be compared (the
same third-party file on both sides: our runtime against onnxruntime). `--bench N` times N runs
of each side (onnxruntime in-process, `rbe-run --bench N`), alternating twice, and prints the
ratio. `--head-dim` gives the past's head size where the graph leaves it symbolic.
`--past-from-prompt` feeds a real cache instead of N(0, 1) pasts: onnxruntime first runs a
prompt of `--past` tokens, and its present.* (with the next greedy token) make the step's
inputs. `--ort-spread` also prints how far onnxruntime is from itself: its outputs with graph
optimizations disabled against its default ones, the yardstick for half-precision files, whose
results depend on where a runtime rounds.

    /root/venvs/torch/bin/python tools/emit_check.py --ours X.rbeonnx --emitted X.onnx \
        [--inputs DIR | --batch 1 --seq 16 [--past P [--past-from-prompt]]] [--tol 1e-4] \
        [--save-refs DIR] [--bench N] [--head-dim D] [--ort-spread]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ORT_THREADS, REPO, gpt2_feed, require  # noqa: E402

RBE_RUN = REPO / "target" / "release" / "rbe-run"


def ort_session(path: Path, optimized: bool = True):
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ORT_THREADS
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_inputs(session, args) -> dict:
    np = require("numpy")
    if args.inputs:
        return {i.name: np.load(args.inputs / f"{i.name}.npy") for i in session.get_inputs()}
    if args.past_from_prompt:
        return step_after_prompt(session, args.batch, args.past, args.head_dim)
    return gpt2_feed(session, args.batch, args.seq, past=args.past, seed=0, head_dim=args.head_dim)


def step_after_prompt(session, batch: int, past: int, head_dim: int | None) -> dict:
    """One decoding step's inputs on a real cache: onnxruntime runs a prompt of `past` tokens
    (gpt2_feed's), and the step feeds its present.* as past_key_values.*, each row's greedy
    next token, the mask and positions grown by one."""
    np = require("numpy")
    if past < 1:
        raise SystemExit("--past-from-prompt needs --past >= 1 (the prompt's length)")
    prompt = gpt2_feed(session, batch, past, past=0, seed=0, head_dim=head_dim)
    names = [o.name for o in session.get_outputs()]
    if "logits" not in names:
        raise SystemExit("--past-from-prompt needs a `logits` output")
    outputs = dict(zip(names, session.run(None, prompt)))
    step = {}
    for name, value in prompt.items():
        if name == "input_ids":
            step[name] = outputs["logits"][:, -1:].argmax(-1).astype(value.dtype)
        elif name == "attention_mask":
            step[name] = np.ones((batch, past + 1), dtype=value.dtype)
        elif name == "position_ids":
            step[name] = np.full((batch, 1), past, dtype=value.dtype)
        elif name.startswith("past_key_values."):
            present = name.replace("past_key_values.", "present.", 1)
            if present not in outputs:
                raise SystemExit(f"--past-from-prompt: no output {present} for input {name}")
            step[name] = np.ascontiguousarray(outputs[present].astype(value.dtype))
        else:
            step[name] = value
    return step


def output_diff(theirs, ours) -> tuple[float, float]:
    """max |theirs - ours|, and it over max |theirs| (0 for empty outputs)."""
    np = require("numpy")
    if not theirs.size:
        return 0.0, 0.0
    a, b = theirs.astype(np.float64), ours.astype(np.float64)
    diff = float(np.abs(a - b).max())
    return diff, diff / max(float(np.abs(a).max()), 1e-30)


def worst_relative(theirs: dict, ours: dict) -> float:
    """The largest relative output_diff over the outputs of `theirs`."""
    return max((output_diff(a, ours[name])[1] for name, a in theirs.items()), default=0.0)


def rbe_args(model: Path, feeds: dict, work: Path) -> list[str]:
    """rbe-run's command line for model on feeds (saved as .npy files under work)."""
    np = require("numpy")
    cmd = [str(RBE_RUN), str(model)]
    for name, value in feeds.items():
        path = work / f"in_{len(cmd)}.npy"
        np.save(path, value)
        cmd += ["--input", f"{name}=@{path}"]
    return cmd


def rbe_outputs(cmd: list[str], work: Path) -> dict:
    np = require("numpy")
    subprocess.run(cmd + ["--save-outputs", str(work / "out")], check=True, stdout=subprocess.DEVNULL)
    return {p.stem: np.load(p) for p in (work / "out").glob("*.npy")}


def rbe_median_ms(cmd: list[str], runs: int) -> float:
    """rbe-run --bench runs: its median (it warms up once first)."""
    out = subprocess.run(cmd + ["--bench", str(runs)], check=True, capture_output=True, text=True).stdout
    match = re.search(r"median ([0-9.]+) ms", out)
    if not match:
        raise SystemExit(f"no median in rbe-run's output: {out[-500:]}")
    return float(match.group(1))


def ort_median_ms(session, feeds: dict, runs: int) -> float:
    np = require("numpy")
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ours", type=Path, required=True)
    p.add_argument("--emitted", type=Path, required=True)
    p.add_argument("--inputs", type=Path)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--past", type=int, default=0)
    p.add_argument("--past-from-prompt", action="store_true",
                   help="the past is onnxruntime's cache after a prompt of --past tokens (one step, seq 1)")
    p.add_argument("--ort-spread", action="store_true",
                   help="also print onnxruntime unoptimized against onnxruntime default on the same inputs")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--head-dim", type=int, help="head size of past_key_values.* where the graph leaves it symbolic")
    p.add_argument("--save-refs", type=Path)
    p.add_argument("--bench", type=int, default=0,
                   help="also time N runs of each side (median ms), alternating twice, with the ratio")
    args = p.parse_args()
    np = require("numpy")

    session = ort_session(args.emitted)
    feeds = load_inputs(session, args)
    names = [o.name for o in session.get_outputs()]
    theirs = dict(zip(names, session.run(None, feeds)))
    tmp = tempfile.TemporaryDirectory()
    rbe_cmd = rbe_args(args.ours, feeds, Path(tmp.name))
    ours = rbe_outputs(rbe_cmd, Path(tmp.name))
    worst = 0.0
    result = {}
    for name in names:
        diff, rel = output_diff(theirs[name], ours[name])
        worst = max(worst, rel)
        shape = list(theirs[name].shape)
        result[name] = {"max_abs_diff": diff, "rel_diff": rel, "shape": shape}
        print(f"{name:<24} shape {shape}  max|diff| {diff:.3g}  relative {rel:.3g}")
    if args.ort_spread:
        plain = dict(zip(names, ort_session(args.emitted, optimized=False).run(None, feeds)))
        result["ort_spread"] = {"worst_rel_diff": worst_relative(theirs, plain),
                                "ours_vs_unoptimized": worst_relative(plain, ours)}
        print(f"onnxruntime unoptimized vs default: worst relative diff {result['ort_spread']['worst_rel_diff']:.3g}; "
              f"ours vs onnxruntime unoptimized: {result['ort_spread']['ours_vs_unoptimized']:.3g}")
    if args.bench:
        # Alternating, twice: onnxruntime, ours, onnxruntime, ours.
        for round_ in range(2):
            theirs_ms, ours_ms = ort_median_ms(session, feeds, args.bench), rbe_median_ms(rbe_cmd, args.bench)
            result[f"round{round_}"] = {"ort_median_ms": theirs_ms, "rbe_median_ms": ours_ms}
            print(f"round {round_}: onnxruntime median {theirs_ms:.2f} ms, rbe-run median {ours_ms:.2f} ms "
                  f"over {args.bench} runs: ours / onnxruntime {ours_ms / theirs_ms:.2f}x")
    tmp.cleanup()
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
