"""Prints the "Layer kernels" table of BENCHMARKS.md from the results of
`cargo bench --bench layers` (criterion's target/criterion/*/new/{benchmark,estimates}.json).

    python3 benches/layers_table.py [--criterion target/criterion] [--raw]

Time = criterion's median per call (ns per token: m = 1). Bound = bytes read / copy bandwidth,
where copy bandwidth = (bytes read + written) / median time of the 64 MiB 2-thread memcpy
(`copy/2thread`). --raw lists every case with its time.
"""
import argparse
import json
from pathlib import Path


def load(root: Path) -> dict:
    out = {}
    for b in root.glob("**/new/benchmark.json"):
        meta = json.loads(b.read_text())
        est = json.loads((b.parent / "estimates.json").read_text())
        out[meta["full_id"]] = (est["median"]["point_estimate"], (meta.get("throughput") or {}).get("Bytes"))
    return out


def fmt_ns(ns: float) -> str:
    return f"{ns / 1e3:.1f} µs" if ns >= 1e4 else f"{ns:.0f} ns"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--criterion", type=Path, default=Path("target/criterion"))
    ap.add_argument("--raw", action="store_true")
    args = ap.parse_args()
    r = load(args.criterion)
    if args.raw:
        for k in sorted(r):
            print(f"{k:40s} {fmt_ns(r[k][0]):>10s}  {r[k][1]} B")
        return
    copy_ns, copy_bytes = r["copy/2thread"]
    bw = copy_bytes / copy_ns  # bytes per ns = GB/s
    print(f"copy bandwidth: {bw:.1f} GB/s (64 MiB memcpy, 2 threads; 1 thread: "
          f"{r['copy/1thread'][1] / r['copy/1thread'][0]:.1f} GB/s)\n")
    formats = ["f32", "q8", "q8-int8", "q4", "q4-int8", "q3", "q3-int8"]
    for group, title in [("gemv", "hot (layer in cache)"), ("gemv_cold", "cold (64 MiB ring of copies)")]:
        shapes = sorted({k.split("/")[1] for k in r if k.startswith(group + "/")})
        if not shapes:
            continue
        print(f"GEMV m=1, {title}: median time per token (bound = bytes / copy bandwidth)\n")
        print("| layer | " + " | ".join(formats) + " |")
        print("|---|" + "---|" * len(formats))
        for s in shapes:
            cells = []
            for f in formats:
                v = r.get(f"{group}/{s}/{f}")
                cells.append("n/a" if v is None else f"{fmt_ns(v[0])} ({fmt_ns(v[1] / bw)})")
            print(f"| {s} | " + " | ".join(cells) + " |")
        print()
    for group, title in [("gather", "embedding lookup, one row per token"), ("gemm_m128", "GEMM m=128 (prompt)")]:
        keys = sorted(k for k in r if k.startswith(group + "/"))
        if keys:
            print(f"{title}:\n")
            for k in keys:
                ns, b = r[k]
                print(f"- {k}: {fmt_ns(ns)} (bound {fmt_ns(b / bw)})")
            print()


if __name__ == "__main__":
    main()
