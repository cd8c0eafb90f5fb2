"""Side-by-side speed and peak memory: our runtime (rbe-run) against onnxruntime.

    /root/venvs/torch/bin/python tools/bench.py [--scenario prompt128,step_past128,step_past128_int8] [--rounds 5] [--runs 10]
                                                 [--json] [--no-build] [--no-rss] [--models DIR] [--repo DIR]
    /root/venvs/torch/bin/python tools/bench.py --model X.onnx --inputs DIR [--ours-model X.rbeonnx]

Measured as shared/design/MEASURING.md says. `cargo build --release` of rbe-run and rbe-convert
first (one `--bin` at a time, so one that does not compile does not stop the other; skip with
--no-build), inputs written once as .npy into a temp dir and fed to both sides. Per scenario: one
warm-up of each side, then R rounds; in each round every side times N runs on the same inputs, the
order alternating between rounds (ours first, then onnxruntime first, ...). Ours:
`target/release/rbe-run MODEL --input NAME=@file.npy ... --bench N` (a subprocess, model load
excluded, RAYON_NUM_THREADS=2). onnxruntime: in this process, CPU provider,
intra_op_num_threads=2, inter_op_num_threads=1, sequential. A side's figure is the median of its R
round medians; the ratio is ours / onnxruntime (below 1: ours is faster), and "rounds' ratios" the
lowest and highest ratio of one round's medians (how far the host's noise moves it). Peak RSS: each side run
once more in its own process under `/usr/bin/time -v` ("Maximum resident set size"): rbe-run
without --bench, onnxruntime a python one-shot (session + one run). The header's host line says
how busy the CPUs were in the second before the run (other processes: a warning above 10%) and
how much CPU time the hypervisor stole during it (/proc/stat), the two things that make a
shared VM's figures slow and noisy.

--avx2-only measures both sides as on an AVX2-only CPU: the script builds tools/avx2_only.c with
gcc into target/avx2_only.so and runs itself again with it in LD_PRELOAD, so CPUID (trapped by the
kernel's CPUID faulting, /proc/cpuinfo flag `cpuid_fault`) hides AVX-512, VNNI and AMX from
onnxruntime (MLAS picks its AVX2/FMA3 kernels) and from rbe-run (detects avx2, no RBE_CPU needed).
The header says what the process saw (numpy's CPU feature probe). The cores, caches and clocks
stay this host's: it is the instruction set of an AVX2 CPU, not its speed.

Scenarios (default: every one whose model files exist):
  prompt128     models/gpt2-small/legacy_op17.onnx, input_ids [1, 128]; ours on the same fp32 file.
  step_past128  models/gpt2-small/optimum_past.onnx, 1 new token at past length 128 (past N(0,1)
                float32, attention_mask ones [1, 129], position_ids [[128]]); ours on
                optimum_past.q4.rbeonnx (made by `rbe-convert --preset q4` if missing), against
                onnxruntime fp32, its MatMulNBits int4 and int4 accuracy_level 4
                (tools/ort_baselines.py).
  step_past128_int8  the same step, ours with --int8-activations (int8 activation rows, integer
                dot products) against onnxruntime int4 accuracy_level 4 (also int8 activations)
                and fp32.
If our side cannot be built, converted or run, the table says why and onnxruntime is still measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

np = c.require("numpy")
ort = c.require("onnxruntime")

PY = "/root/venvs/torch/bin/python"
GPT2_RECIPE = f"{PY} tools/export_gpt2_small.py"
BASELINE_RECIPE = f"{PY} tools/ort_baselines.py {{model}}"
BENCH_LINE = re.compile(r"median ([0-9.]+) ms, min ([0-9.]+) ms \((\d+) runs\)")
ISA_LINE = re.compile(r"^isa: (\w+)$", re.M)  # the instruction set rbe-run's kernels dispatch to
RSS_LINE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
ORT_ONESHOT = """\
import sys, pathlib, numpy as np
sys.path.insert(0, sys.argv[3])
import common
feed = {p.name[:-4]: np.load(p) for p in pathlib.Path(sys.argv[2]).glob("*.npy")}
common.ort_session(sys.argv[1]).run(None, feed)
"""


@dataclass
class Side:
    label: str          # "ours", "ort fp32", "ort int4", ...
    model: Path
    flags: list[str] = field(default_factory=list)  # extra rbe-run flags (ours only)
    error: str | None = None
    round_medians: list[float] = field(default_factory=list)
    round_mins: list[float] = field(default_factory=list)
    rss_kb: int | None = None
    rss_error: str | None = None
    isa: str | None = None  # ours only: the kernels' instruction set, as rbe-run --bench reports it

    def summary(self) -> dict:
        done = self.round_medians and not self.error  # no figure from a side that failed midway
        return {"label": self.label, "model": c.rel(self.model), "error": self.error,
                "median_ms": statistics.median(self.round_medians) if done else None,
                "min_ms": min(self.round_mins) if done else None,
                "round_medians_ms": self.round_medians, "peak_rss_kb": self.rss_kb,
                "rss_error": self.rss_error}


@dataclass
class Scenario:
    name: str
    description: str
    ours: Side
    orts: list[Side]
    feed: object                   # callable(session) -> dict, or a directory of NAME.npy
    convert_from: Path | None = None  # make ours.model from this with rbe-convert if missing
    required: list[tuple[Path, str]] = field(default_factory=list)  # (file, recipe that makes it)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- scenarios


def builtin_scenarios(models: Path) -> dict[str, Scenario]:
    small = models / "gpt2-small"
    legacy, past = small / "legacy_op17.onnx", small / "optimum_past.onnx"
    q4 = small / "optimum_past.q4.rbeonnx"
    int4 = small / "optimum_past.ort_int4.onnx"
    int4_acc4 = small / "optimum_past.ort_int4_acc4.onnx"
    baseline = BASELINE_RECIPE.format(model=c.rel(past))
    legacy_q4 = small / "legacy_op17.q4.rbeonnx"
    legacy_int4_acc4 = small / "legacy_op17.ort_int4_acc4.onnx"
    legacy_baseline = BASELINE_RECIPE.format(model=c.rel(legacy))
    prompt = lambda s: c.gpt2_feed(s, batch=1, seq=128)  # noqa: E731
    return {
        "prompt128": Scenario(
            "prompt128", "GPT-2 small fp32, input_ids [1, 128]",
            Side("ours fp32", legacy), [Side("ort fp32", legacy)],
            prompt, required=[(legacy, GPT2_RECIPE)]),
        "prompt128_q4": Scenario(
            "prompt128_q4", "GPT-2 small q4, input_ids [1, 128]",
            Side("ours q4", legacy_q4),
            [Side("ort fp32", legacy), Side("ort int4 acc4", legacy_int4_acc4)],
            prompt, convert_from=legacy,
            required=[(legacy, GPT2_RECIPE), (legacy_int4_acc4, legacy_baseline)]),
        "prompt128_q4_int8": Scenario(
            "prompt128_q4_int8", "GPT-2 small q4, input_ids [1, 128], int8 activations",
            Side("ours q4 int8", legacy_q4, ["--int8-activations"]),
            [Side("ort int4 acc4", legacy_int4_acc4), Side("ort fp32", legacy)],
            prompt, convert_from=legacy,
            required=[(legacy, GPT2_RECIPE), (legacy_int4_acc4, legacy_baseline)]),
        "step_past128": Scenario(
            "step_past128", "GPT-2 small, 1 token at past 128",
            Side("ours q4", q4),
            [Side("ort fp32", past), Side("ort int4", int4), Side("ort int4 acc4", int4_acc4)],
            lambda s: c.gpt2_feed(s, batch=1, seq=1, past=128, seed=128),
            convert_from=past,
            required=[(past, GPT2_RECIPE), (int4, baseline), (int4_acc4, baseline)]),
        "step_past128_int8": Scenario(
            "step_past128_int8", "GPT-2 small, 1 token at past 128, int8 activations",
            Side("ours q4 int8", q4, ["--int8-activations"]),
            [Side("ort int4 acc4", int4_acc4), Side("ort fp32", past)],
            lambda s: c.gpt2_feed(s, batch=1, seq=1, past=128, seed=128),
            convert_from=past,
            required=[(past, GPT2_RECIPE), (int4_acc4, baseline)]),
    }


def custom_scenario(model: Path, inputs: Path, ours_model: Path | None) -> Scenario:
    if not inputs.is_dir() or not list(inputs.glob("*.npy")):
        c.fail(f"--inputs {inputs}: not a directory of <input name>.npy files")
    return Scenario(model.name[:-len(".onnx")] if model.name.endswith(".onnx") else model.name,
                    f"{c.rel(model)} on {c.rel(inputs)}",
                    Side("ours", ours_model or model), [Side("ort", model)], inputs,
                    required=[(p, "your own file") for p in (model, ours_model) if p])


def missing_files(sc: Scenario) -> list[str]:
    return [f"{c.rel(p)} (make it with: {recipe})" for p, recipe in sc.required if not p.exists()]


def prepare_inputs(sc: Scenario, session, out_dir: Path) -> dict:
    """The scenario's feed, checked against the graph, cast to its dtypes, saved as NAME.npy."""
    dtypes = c.graph_dtypes(session)
    if isinstance(sc.feed, Path):
        feed = {p.name[:-len(".npy")]: np.load(p) for p in sc.feed.glob("*.npy")}
    else:
        feed = sc.feed(session)
    if set(feed) != set(dtypes):
        c.fail(f"{sc.name}: inputs {sorted(feed)} != graph inputs {sorted(dtypes)}")
    out_dir.mkdir(parents=True)
    feed = {k: np.ascontiguousarray(v.astype(dtypes[k], copy=False)) for k, v in feed.items()}
    for k, v in feed.items():
        np.save(out_dir / f"{k}.npy", v)
    return feed


# --------------------------------------------------------------------------- our side


def target_dir(repo: Path) -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", repo / "target")) / "release"


BINARIES = ("rbe-run", "rbe-convert")


def find_binaries(repo: Path, build: bool) -> dict[str, Path | str]:
    """Binary name -> its path under target/release, or -> a message saying why it is unusable.
    Builds each binary with `cargo build --release --bin NAME` first (unless build is False), so
    that rbe-run is still measured while rbe-convert does not compile, and vice versa."""
    found: dict[str, Path | str] = {}
    for name in BINARIES:
        path = target_dir(repo) / name
        if build:
            log(f"$ (cd {repo} && cargo build --release --bin {name})")
            res = subprocess.run(["cargo", "build", "--release", "--bin", name], cwd=repo,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
                why = " | ".join(errors[:4]) or tail(res.stderr)
                found[name] = f"cargo build --release --bin {name} failed: {why}"
                continue
        found[name] = path if path.exists() else f"{path} not found (build it with: cargo build --release)"
    for name, v in found.items():
        if isinstance(v, str):
            log(f"{name} unavailable: {v}")
    return found


def ours_env() -> dict:
    return dict(os.environ, RAYON_NUM_THREADS=str(c.ORT_THREADS))


def convert(rbe_convert: Path, src: Path, dst: Path, force: bool) -> str | None:
    cmd = [str(rbe_convert), str(src), "-o", str(dst), "--preset", "q4"] + (["--force"] if force else [])
    log("$ " + shlex.join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True, env=ours_env())
    if res.returncode != 0 or not dst.exists():
        return f"rbe-convert failed (exit {res.returncode}): {tail(res.stderr or res.stdout)}"
    return None


def rbe_run_cmd(rbe_run: Path, model: Path, input_dir: Path) -> list[str]:
    cmd = [str(rbe_run), str(model)]
    for p in sorted(input_dir.glob("*.npy")):
        cmd += ["--input", f"{p.name[:-len('.npy')]}=@{p}"]
    return cmd


def time_ours(cmd: list[str], runs: int) -> tuple[float, float, str | None]:
    """One `rbe-run --bench runs` call: (median ms, min ms, ISA line or None). Raises
    RuntimeError on failure."""
    res = subprocess.run(cmd + ["--bench", str(runs)], capture_output=True, text=True, env=ours_env())
    m = BENCH_LINE.search(res.stdout)
    if res.returncode != 0 or not m:
        raise RuntimeError(f"rbe-run failed (exit {res.returncode}): {tail(res.stderr or res.stdout)}")
    isa = ISA_LINE.search(res.stdout)
    return float(m.group(1)), float(m.group(2)), isa.group(1) if isa else None


# --------------------------------------------------------------------------- onnxruntime side


def time_ort(session, feed: dict, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def peak_rss(cmd: list[str], env: dict | None = None) -> tuple[int | None, str | None]:
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    m = RSS_LINE.search(res.stderr)
    if res.returncode != 0 or not m:
        return None, f"exit {res.returncode}: {tail(RSS_LINE.sub('', res.stderr), 4)}"
    return int(m.group(1)), None


# --------------------------------------------------------------------------- one scenario


def run_scenario(sc: Scenario, tmp: Path, bins: dict, args) -> None:
    log(f"== {sc.name}: {sc.description}")
    sessions = [c.ort_session(s.model) for s in sc.orts]
    input_dir = tmp / sc.name
    feed = prepare_inputs(sc, sessions[0], input_dir)

    ours = sc.ours
    rbe_run, rbe_convert = bins["rbe-run"], bins["rbe-convert"]
    ours.error = rbe_run if isinstance(rbe_run, str) else None
    if not ours.error and sc.convert_from and (args.reconvert or not ours.model.exists()):
        if isinstance(rbe_convert, str):
            ours.error = f"{c.rel(ours.model)} cannot be made: {rbe_convert}"
        else:
            ours.error = convert(rbe_convert, sc.convert_from, ours.model, force=ours.model.exists())
    cmd = rbe_run_cmd(Path(str(rbe_run)), ours.model, input_dir) + ours.flags
    if not ours.error:
        log("$ " + shlex.join(cmd + ["--bench", str(args.runs)]))
        try:  # warm-up (and check that it runs at all)
            ours.isa = time_ours(cmd, 1)[2]
        except RuntimeError as e:
            ours.error = str(e)
    for side, sess in zip(sc.orts, sessions):
        try:
            sess.run(None, feed)  # warm-up
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
            c.fail(f"{sc.name}: onnxruntime cannot run {c.rel(side.model)} on these inputs: {e}")

    for r in range(args.rounds):
        order = [ours, *sc.orts] if r % 2 == 0 else [*sc.orts, ours]
        for side in order:
            if side is ours:
                if ours.error:
                    continue
                try:
                    med, mn, _ = time_ours(cmd, args.runs)
                except RuntimeError as e:
                    ours.error = f"round {r + 1}: {e}"
                    continue
            else:
                med, mn = time_ort(sessions[sc.orts.index(side)], feed, args.runs)
            side.round_medians.append(med)
            side.round_mins.append(mn)
        done = [s for s in [ours, *sc.orts] if len(s.round_medians) == r + 1]
        times = ", ".join(f"{s.label} {s.round_medians[-1]:.2f} ms" for s in done)
        log(f"  round {r + 1}/{args.rounds}: {times}")
    del sessions

    if args.no_rss:
        return
    if not ours.error:
        ours.rss_kb, ours.rss_error = peak_rss(cmd, ours_env())
    for side in sc.orts:
        side.rss_kb, side.rss_error = peak_rss(
            [sys.executable, "-c", ORT_ONESHOT, str(side.model), str(input_dir), str(Path(__file__).parent)])


# --------------------------------------------------------------------------- report


def rows(scenarios: list[Scenario]) -> list[dict]:
    out = []
    for sc in scenarios:
        o = sc.ours.summary()
        for side in sc.orts:
            r = side.summary()
            ratio = o["median_ms"] / r["median_ms"] if o["median_ms"] and r["median_ms"] else None
            paired = zip(o["round_medians_ms"], r["round_medians_ms"]) if ratio else []
            out.append({"scenario": sc.name, "description": sc.description, "ours": o, "ort": r,
                        "ratio_ours_over_ort": ratio, "round_ratios": [a / b for a, b in paired]})
    return out


def fmt(v, spec: str, none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def cpu_description() -> str:
    """The CPU as /proc/cpuinfo names it (model name, vendor, family and model), and how many
    logical CPUs this process may use: the same ISA level can sit on very different cores."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name", "unknown CPU")
    ident = " ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
    vendor = fields.get("vendor_id", "")
    detail = ", ".join(x for x in (vendor, ident) if x)
    return f"{name}{f' ({detail})' if detail else ''}, {len(os.sched_getaffinity(0))} logical CPUs"


def cpu_times() -> tuple[int, int, int] | None:
    """(total, busy, steal) clock ticks of all CPUs so far, from /proc/stat's first line (busy:
    neither idle, waiting on I/O nor stolen); None where there is no /proc/stat."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    total, idle, steal = sum(ticks), ticks[3] + ticks[4], ticks[7]
    return total, total - idle - steal, steal


def share(before: tuple[int, int, int] | None, after: tuple[int, int, int] | None, index: int) -> float | None:
    """Entry `index` of [`cpu_times`]'s tuple between two readings, as a fraction of all ticks."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[index] - before[index]) / (after[0] - before[0])


def busy_before_run(seconds: float = 1.0) -> float | None:
    """How busy the CPUs were over `seconds` while this script only slept: other processes
    (a forgotten benchmark, a build) take cores from both sides and make every figure noisy."""
    before = cpu_times()
    time.sleep(seconds)
    busy = share(before, cpu_times(), 1)
    if busy is not None and busy > 0.1:
        log(f"warning: the CPUs were {busy:.0%} busy before the run with this script idle: another "
            "process is running (`ps aux --sort=-%cpu`), the timings will be slow and noisy")
    return busy


def host_line(meta: dict) -> str:
    """The header's line on how quiet the host was (see [`busy_before_run`])."""
    pct = lambda v: "unknown" if v is None else f"{v:.0%}"  # noqa: E731
    return (f"host: CPUs busy in the second before the run (this script idle): {pct(meta['busy_before'])}; "
            f"CPU time stolen by the hypervisor during the run: {pct(meta['steal'])}")


def print_table(scenarios: list[Scenario], meta: dict) -> None:
    print(f"command: {meta['command']}")
    print(f"cpu: {meta['cpu']}")
    print(host_line(meta))
    seen = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in meta["cpu_features_seen"].items())
    how = f"AVX2-only, LD_PRELOAD {meta['avx2_only']}" if meta["avx2_only"] else "as the CPU reports it"
    print(f"instruction set both sides see: {how} ({seen})")
    print(f"ours: isa {meta['isa'] or 'unknown (rbe-run printed no isa line)'}, RBE_CPU={meta['rbe_cpu'] or 'unset'}")
    print(f"onnxruntime {meta['onnxruntime']}, {meta['threads']} threads, {meta['rounds']} rounds x "
          f"{meta['runs']} runs after a warm-up, ms = median of round medians; RSS = peak, "
          f"one run in its own process; repo {meta['repo_commit']}")
    head = ["scenario", "onnxruntime model", "ours ms", "ort ms", "ours/ort", "rounds' ratios", "ours RSS MB",
            "ort RSS MB"]
    table = [head]
    for r in rows(scenarios):
        o, t, rr = r["ours"], r["ort"], r["round_ratios"]
        spread = f"{min(rr):.2f}-{max(rr):.2f}" if rr else "n/a"
        table.append([r["scenario"], f"{t['label']} ({Path(t['model']).name})", fmt(o["median_ms"], ".2f"),
                      fmt(t["median_ms"], ".2f"), fmt(r["ratio_ours_over_ort"], ".2f"), spread,
                      fmt(o["peak_rss_kb"] and o["peak_rss_kb"] / 1024, ".0f"),
                      fmt(t["peak_rss_kb"] and t["peak_rss_kb"] / 1024, ".0f")])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells))
    for sc in scenarios:
        print(f"{sc.name}: ours = {c.rel(sc.ours.model)}" +
              (f" -- UNAVAILABLE: {sc.ours.error}" if sc.ours.error else ""))
        for side in [sc.ours, *sc.orts]:
            if side.rss_error:
                print(f"{sc.name}: peak RSS of {side.label} not measured: {side.rss_error}")


def repo_commit(repo: Path) -> str:
    res = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


# --------------------------------------------------------------------------- --avx2-only

AVX2_ONLY_SOURCE = Path(__file__).resolve().parent / "avx2_only.c"
AVX2_ONLY_ENV = "RBE_BENCH_AVX2_ONLY"  # set in the re-executed process: the library's path


def avx2_only_library(repo: Path) -> Path:
    """tools/avx2_only.c built with gcc into target/avx2_only.so (rebuilt when the source is newer)."""
    out = target_dir(repo).parent / "avx2_only.so"
    if out.exists() and out.stat().st_mtime >= AVX2_ONLY_SOURCE.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(AVX2_ONLY_SOURCE)]
    log("$ " + shlex.join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        c.fail(f"--avx2-only needs gcc: {e}")
    if res.returncode != 0:
        c.fail(f"building {AVX2_ONLY_SOURCE.name} failed: {tail(res.stderr)}")
    return out


def rerun_avx2_only(repo: Path) -> None:
    """Replaces this process with itself under LD_PRELOAD=target/avx2_only.so (never returns)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "cpuid_fault" not in flags.split():
        c.fail("--avx2-only needs CPUID faulting (flag cpuid_fault in /proc/cpuinfo), which this "
               "kernel or CPU does not offer")
    lib = avx2_only_library(repo)
    preload = " ".join(x for x in (str(lib), os.environ.get("LD_PRELOAD", "")) if x)
    env = dict(os.environ, LD_PRELOAD=preload, **{AVX2_ONLY_ENV: str(lib)})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def cpu_features_seen() -> dict[str, bool]:
    """What this process's CPUID says, as numpy's dispatcher probed it at import."""
    umath = getattr(getattr(np, "_core", None), "_multiarray_umath", None) or np.core._multiarray_umath
    found = getattr(umath, "__cpu_features__", {})
    return {k: bool(found[k]) for k in ("AVX2", "FMA3", "AVX512F", "AVX512VNNI") if k in found}


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--scenario", help="comma-separated: prompt128, prompt128_q4, prompt128_q4_int8, step_past128, step_past128_int8 "
                    "(default: all whose files exist)")
    ap.add_argument("--model", type=Path, help="generic mode: an .onnx file both sides run")
    ap.add_argument("--inputs", type=Path, help="generic mode: directory of <input name>.npy")
    ap.add_argument("--ours-model", type=Path, help="generic mode: what rbe-run runs instead of --model "
                    "(e.g. an .rbeonnx)")
    ap.add_argument("--rounds", type=int, default=5, help="R rounds per side (default 5)")
    ap.add_argument("--runs", type=int, default=10, help="N timed runs per round (default 10)")
    ap.add_argument("--models", type=Path, default=c.MODELS, help="models directory (default: models/)")
    ap.add_argument("--repo", type=Path, default=c.REPO,
                    help="where to cargo build and find target/release (default: this checkout)")
    ap.add_argument("--no-build", action="store_true", help="skip the cargo build; use existing binaries")
    ap.add_argument("--reconvert", action="store_true", help="remake .rbeonnx files even if they exist")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--avx2-only", action="store_true",
                    help="both sides see an AVX2-only CPU (tools/avx2_only.c in LD_PRELOAD; see below)")
    args = ap.parse_args()
    if args.rounds < 1 or args.runs < 1:
        c.fail("--rounds and --runs must be at least 1")
    rerun = AVX2_ONLY_ENV in os.environ  # this process is the --avx2-only re-run
    if args.avx2_only and not rerun:
        if not args.no_build:
            # rustc dies under the library (it replaces its SIGSEGV handler): build before.
            find_binaries(args.repo, build=True)
        rerun_avx2_only(args.repo)
    seen = cpu_features_seen()
    if args.avx2_only and (seen.get("AVX512F", True) or not seen.get("AVX2", False)):
        c.fail(f"--avx2-only: this process still sees {seen} (LD_PRELOAD={os.environ.get('LD_PRELOAD')})")

    if args.model or args.inputs:
        if not (args.model and args.inputs) or args.scenario:
            c.fail("generic mode takes --model X.onnx and --inputs DIR (and no --scenario)")
        scenarios = [custom_scenario(args.model, args.inputs, args.ours_model)]
    else:
        known = builtin_scenarios(args.models)
        if args.scenario:
            names = [n.strip() for n in args.scenario.split(",") if n.strip()]
            unknown = [n for n in names if n not in known]
            if unknown:
                c.fail(f"unknown scenario(s) {unknown}; known: {sorted(known)}")
            scenarios = [known[n] for n in names]
        else:
            scenarios = []
            for sc in known.values():
                if missing_files(sc):
                    log(f"skipping {sc.name}: missing " + "; ".join(missing_files(sc)))
                else:
                    scenarios.append(sc)
            if not scenarios:
                c.fail(f"no scenario has its model files under {args.models}")
    for sc in scenarios:
        if missing_files(sc):
            c.fail(f"{sc.name}: missing " + "; ".join(missing_files(sc)))

    bins = find_binaries(args.repo, build=not args.no_build and not rerun)

    busy = busy_before_run()
    start = cpu_times()
    with tempfile.TemporaryDirectory(prefix="rbe-bench-") as tmp:
        for sc in scenarios:
            run_scenario(sc, Path(tmp), bins, args)
    steal = share(start, cpu_times(), 2)

    meta = {"command": shlex.join([Path(sys.executable).as_posix(), *sys.argv]),
            "onnxruntime": ort.__version__, "threads": c.ORT_THREADS, "rounds": args.rounds,
            "runs": args.runs, "repo_commit": repo_commit(args.repo),
            "isa": next((sc.ours.isa for sc in scenarios if sc.ours.isa), None),
            "rbe_cpu": os.environ.get("RBE_CPU"), "cpu": cpu_description(),
            "busy_before": busy, "steal": steal, "cpu_features_seen": seen,
            "avx2_only": os.environ.get(AVX2_ONLY_ENV),
            "rbe_run": str(bins["rbe-run"]) if isinstance(bins["rbe-run"], Path) else None}
    if args.json:
        print(json.dumps({**meta, "results": rows(scenarios)}, indent=2))
    else:
        print_table(scenarios, meta)


if __name__ == "__main__":
    main()
