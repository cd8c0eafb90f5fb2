#!/usr/bin/env bash
# The main job on the bundled default: convert the committed tiny GPT-2 fixture with the q4
# preset (prints the per-tensor report), then run the original and the converted model on the
# same tokens and show their top-5 next tokens, then measure the converted model against the
# original with snapshot-diff (metrics table, thresholds, HTML report).
set -euo pipefail
cd "$(dirname "$0")"
model=${1:-tests/fixtures/gpt2_legacy_op17.onnx}
out=${OUT:-target/demo}
mkdir -p "$out"
cargo build --release --quiet --bins
target/release/rbe-convert "$model" -o "$out/model.rbeonnx" --preset q4 --report "$out/report.json" --force
echo "== original ($model)"
target/release/rbe-run "$model" --input-ids 464,268,758,318
echo "== converted ($out/model.rbeonnx)"
target/release/rbe-run "$out/model.rbeonnx" --input-ids 464,268,758,318
echo "== accuracy of the converted model (snapshot-diff, 4 random sequences of 64 tokens)"
target/release/snapshot-diff "$model" "$out/model.rbeonnx" --min-top1 0.5 --max-kl 0.01 --html "$out/report.html" --convert-report "$out/report.json"
echo "HTML report: $out/report.html"
