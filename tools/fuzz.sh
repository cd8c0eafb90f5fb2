#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ with afl.rs, generates their seeds, fuzzes each target for
# SECONDS, one afl-fuzz at a time, and prints each target's executions from AFL's fuzzer_stats.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]     (default 600 s each; targets: onnx_load graph container npy)
#
# Environment: CARGO_TARGET_DIR (default fuzz/target), FUZZ_OUT (default fuzz/out; a target's
# findings are in $FUZZ_OUT/<target>/default/{crashes,hangs}; an existing one is resumed),
# FUZZ_NICE (default 19). Needs `cargo install cargo-afl` (see fuzz/README.md).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(onnx_load graph container npy)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/fuzz/target}
out=${FUZZ_OUT:-$repo/fuzz/out}
nice=${FUZZ_NICE:-19}

(cd "$repo/fuzz" && nice -n "$nice" cargo afl build --release)
bin=$CARGO_TARGET_DIR/release
nice -n "$nice" "$bin/gen_seeds" "$repo" "$out/seeds"

# Longest input each target mutates (bytes) and its per-execution timeout (ms).
max_len() { case $1 in onnx_load) echo 131072 ;; npy) echo 4096 ;; *) echo 32768 ;; esac; }
timeout_ms() { case $1 in graph | container) echo 5000 ;; *) echo 1000 ;; esac; }

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
export AFL_AUTORESUME=1 RAYON_NUM_THREADS=1
for t in "${targets[@]}"; do
    echo "== $t: ${seconds}s"
    nice -n "$nice" cargo afl fuzz -i "$out/seeds/$t" -o "$out/$t" -V "$seconds" -G "$(max_len "$t")" \
        -t "$(timeout_ms "$t")" -m 4096 "$bin/$t" > "$out/$t.log" 2>&1 || {
        echo "afl-fuzz failed for $t, see $out/$t.log"
        tail -20 "$out/$t.log"
        exit 1
    }
done

stat() { sed -n "s/^$2 *: *//p" "$1"; }
total=0
printf '%-10s %14s %10s %8s %8s %6s\n' target execs execs/s seconds crashes hangs
for t in "${targets[@]}"; do
    s=$out/$t/default/fuzzer_stats
    execs=$(stat "$s" execs_done)
    total=$((total + execs))
    printf '%-10s %14s %10s %8s %8s %6s\n' "$t" "$execs" "$(stat "$s" execs_per_sec)" "$(stat "$s" run_time)" \
        "$(stat "$s" saved_crashes)" "$(stat "$s" saved_hangs)"
done
echo "total execs: $total"
