"""Export the committed tiny Llama-style fixtures (tests/fixtures/llama_*.onnx) and their
onnxruntime references (golden/refs/llama_*).

    /root/venvs/torch/bin/python tools/export_llama_fixtures.py

One tiny Llama (LlamaConfig: 2 layers, hidden 64, 4 query heads sharing 2 key/value heads,
SwiGLU width 128, vocab 1000, RMSNorm, RoPE theta 10000, tied embeddings; seed 0, every
parameter perturbed with N(0, 0.02)) exported as:

    llama_legacy_op17_mask.onnx   torch legacy exporter, opset 17, eager attention (the legacy
                                  exporter cannot export SDPA with grouped-query attention)
    llama_dynamo_op18_mask.onnx   torch dynamo exporter, opset 18, SDPA attention
    llama_optimum_past.onnx       optimum-cli text-generation-with-past (optimum venv)

The torch exports take input_ids and attention_mask and give logits; the optimum one also takes
position_ids and past_key_values.{0,1}.{key,value} [batch, 2, past, 16] and gives present.*.
Every file is checked with onnx.checker and against PyTorch. References: the cases of
tools/references.py (torch fixtures: b1_s1, b1_s7, b1_s64, b2_s16 right-padded,
b2_s16_leftpad; optimum: prompt_b1_s7, step_b1_past7, prompt_b2_s16, step_b2_past16).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import references as r  # noqa: E402

SEED = 0
TOL = 1e-4
TORCH_FIXTURES = [("llama_legacy_op17_mask", "legacy", 17, "eager"), ("llama_dynamo_op18_mask", "dynamo", 18, "sdpa")]
OPTIMUM_FIXTURE = "llama_optimum_past"


def tiny_llama_config():
    transformers = c.require("transformers")
    return transformers.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)


def main() -> None:
    torch = c.require("torch")
    np = c.require("numpy")
    c.require("onnxscript")
    c.optimum_cli()
    c.FIXTURES.mkdir(parents=True, exist_ok=True)
    results = {}
    for stem, exporter, opset, attention in TORCH_FIXTURES:
        model = c.make_llama(tiny_llama_config(), SEED, attention)
        path = c.FIXTURES / f"{stem}.onnx"
        print(f"exporting {c.rel(path)} (torch {torch.__version__}, {attention} attention)", flush=True)
        if exporter == "legacy":
            c.export_legacy(model, path, opset, with_mask=True)
        else:
            c.export_dynamo(model, path, opset, with_mask=True)
        c.check_model(path)
        diff = c.verify_against_torch(model, path, True, TOL)
        print(f"  checked; max |ORT - torch| = {diff:.3g}")
        shutil.rmtree(c.GOLDEN_REFS / stem, ignore_errors=True)
        results[stem] = r.run_torch_fixture(stem, c.GOLDEN_REFS)

    model = c.make_llama(tiny_llama_config(), SEED, "eager")
    pretrained = c.MODELS / "tiny-llama"
    c.save_pretrained_for_optimum(model, None, pretrained)
    path = c.FIXTURES / f"{OPTIMUM_FIXTURE}.onnx"
    print(f"exporting {c.rel(path)} with optimum", flush=True)
    c.export_optimum_past(pretrained, path, c.MODELS / "tiny-llama-optimum-tmp")
    c.check_model(path)
    diff = c.verify_optimum_against_torch(model, path, TOL)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}")
    shutil.rmtree(c.GOLDEN_REFS / OPTIMUM_FIXTURE, ignore_errors=True)
    results[OPTIMUM_FIXTURE] = r.run_optimum_fixture(OPTIMUM_FIXTURE, c.GOLDEN_REFS)

    # Same weights: the three files agree on the unpadded prompt.
    legacy, dynamo = (results[s]["b1_s7"]["logits"] for s, *_ in TORCH_FIXTURES)
    past = results[OPTIMUM_FIXTURE]["prompt_b1_s7"]["logits"]
    worst = max(float(np.abs(dynamo - legacy).max()), float(np.abs(past - legacy).max()))
    print(f"  check: the three exports agree on b1_s7: max |diff| = {worst:.3g}")
    if worst > r.CROSS_TOL:
        c.fail(f"llama fixtures disagree by {worst:.3g}")
    for stem in [s for s, *_ in TORCH_FIXTURES] + [OPTIMUM_FIXTURE]:
        print(c.describe(c.FIXTURES / f"{stem}.onnx"))


if __name__ == "__main__":
    main()
