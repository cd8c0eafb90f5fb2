#!/usr/bin/env bash
# Rate–distortion points of a language model, each judged on a held-out text, and their plot.
#
#   tools/rate_distortion.sh MODEL.onnx TOKENIZER.json OUT_DIR [PYTHON]
#   ENCODER=1 tools/rate_distortion.sh ...     (a sentence encoder: no logits, no allocation)
#
# Converts MODEL.onnx with the RBE presets (q8, q4, q3), calibrated presets (q4 with windows of
# 512, q3 with windows of 256, on tools/texts/calibration.txt), an allocation at the calibrated
# q3's average width, and one for `--target-kl 0.05` calibrated on calibration.txt and
# calibration-more.txt (enough windows to hold every fourth out); for an encoder: calibrated q4
# and q3 in the tokenizer's windows, and calibrated `--bits 5 --embedding-bits 3`, judged in
# windows of 128 by 1 - cosine of the outputs; with PYTHON (a venv with onnx and onnxruntime)
# also onnxruntime's int4 RTN and HQQ files (tools/ort_baselines.py). Each is compared with the
# original by `snapshot-diff --text tools/texts/eval.txt --window 512` (OUT_DIR/NAME.run.json:
# mean KL, top-1, perplexity, and the rate: the file's bits per original weight, every byte
# counted); then OUT_DIR/rd.html (all runs) and OUT_DIR/rd.svg (the rate–distortion plot).
# Files already made are kept (delete one to redo it). Uses the release binaries of this
# checkout (BIN overrides target/release); run `cargo build --release` first.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,18p' "$0" >&2
    exit 2
fi
model=$1 tokenizer=$2 out=$3 python=${4:-}
bin=${BIN:-target/release}
encoder=${ENCODER:-}
window=512
[ -n "$encoder" ] && window=128
calibration=tools/texts/calibration.txt
held_out=tools/texts/eval.txt
mkdir -p "$out"

# convert NAME FLAGS...: MODEL.onnx -> OUT_DIR/NAME.rbeonnx, with its report and wall time.
convert() {
    local name=$1
    shift
    [ -f "$out/$name.rbeonnx" ] && return
    # An allocation that misses its target exits 2 but still writes its file: a point all the same.
    /usr/bin/time -f "$name: %e s, peak RSS %M KB" -a -o "$out/convert-times.txt" \
        "$bin/rbe-convert" "$model" -o "$out/$name.rbeonnx" --report "$out/$name.report.json" "$@" >/dev/null ||
        [ -f "$out/$name.rbeonnx" ]
}

# judge NAME SERIES FILE: the run's JSON (snapshot-diff exits 1 only when a threshold fails; none is set).
judge() {
    [ -f "$out/$1.run.json" ] && return
    "$bin/snapshot-diff" "$model" "$3" --text "$held_out" --tokenizer "$tokenizer" --window "$window" \
        --json --label "$1" --series "$2" >"$out/$1.run.json.tmp"
    mv "$out/$1.run.json.tmp" "$out/$1.run.json"
}

calibrated=(--calibrate "$calibration" --tokenizer "$tokenizer")
for preset in q8 q4 q3; do
    convert "$preset" --preset "$preset"
    judge "$preset" "RBE presets" "$out/$preset.rbeonnx"
done
convert q4-calibrated --preset q4 "${calibrated[@]}"
judge q4-calibrated "RBE calibrated" "$out/q4-calibrated.rbeonnx"
if [ -n "$encoder" ]; then
    convert q3-calibrated --preset q3 "${calibrated[@]}"
    judge q3-calibrated "RBE calibrated" "$out/q3-calibrated.rbeonnx"
    convert e3l5-calibrated --preset q4 --bits 5 --embedding-bits 3 "${calibrated[@]}"
    judge e3l5-calibrated "RBE calibrated" "$out/e3l5-calibrated.rbeonnx"
else
    convert q3-calibrated --preset q3 "${calibrated[@]}" --calib-window 256
    judge q3-calibrated "RBE calibrated" "$out/q3-calibrated.rbeonnx"
    convert avg-3.436 "${calibrated[@]}" --calib-window 256 --avg-bpw 3.436 --widths 3,4,5,6,8
    judge avg-3.436 "RBE allocation" "$out/avg-3.436.rbeonnx"
    convert kl-0.05 "${calibrated[@]}" --calibrate tools/texts/calibration-more.txt --target-kl 0.05 --widths 3,4
    judge kl-0.05 "RBE allocation" "$out/kl-0.05.rbeonnx"
fi

if [ -n "$python" ]; then
    stem=$(basename "$model" .onnx)
    [ -f "$out/$stem.ort_hqq.onnx" ] || "$python" tools/ort_baselines.py "$model" --out-dir "$out" >"$out/ort_baselines.log"
    judge ort-int4-rtn "onnxruntime int4" "$out/$stem.ort_int4.onnx"
    judge ort-int4-hqq "onnxruntime int4" "$out/$stem.ort_hqq.onnx"
fi

"$bin/snapshot-diff" report "$out"/*.run.json -o "$out/rd.html" --rd-svg "$out/rd.svg"
echo "wrote $out/rd.html and $out/rd.svg"
