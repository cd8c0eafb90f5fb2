"""Export the committed tiny GPT-2 ONNX fixtures (tests/fixtures/gpt2_*.onnx).

    /root/venvs/torch/bin/python tools/export_fixtures.py

Builds one tiny GPT-2 (GPT2Config n_layer=2, n_embd=64, n_head=4, vocab_size=1000,
n_positions=128; seed 0; every parameter perturbed with N(0, 0.02)), saves it with
save_pretrained under models/tiny-gpt2/ (gitignored), and exports the same weights as:

    gpt2_legacy_op14[_mask].onnx   torch legacy exporter, opset 14 (LayerNorm decomposed)
    gpt2_legacy_op17[_mask].onnx   torch legacy exporter, opset 17 (LayerNormalization)
    gpt2_dynamo_op18[_mask].onnx   torch dynamo exporter, opset 18, weights embedded
    gpt2_optimum_past.onnx         optimum-cli text-generation-with-past (optimum venv)

Without _mask the only input is input_ids; with _mask the inputs are input_ids, attention_mask.
Batch and sequence axes are dynamic. The logits output is named 'logits' in every file: the
torch exporters get output_names=["logits"] and optimum already calls it that; the script
checks this and would rename a differently named output with common.rename_graph_output.

Each file is checked with onnx.checker (full check) and loaded in onnxruntime, and every torch
export is compared with the PyTorch model on a few shapes (incl. padded masks).
Deterministic: rerunning produces the same weights (and, in practice, identical files).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

SEED = 0
TOL = 1e-4  # max |ORT - torch| on logits accepted for the tiny model

TORCH_FIXTURES = [
    # (file stem, exporter, opset, with attention_mask)
    ("gpt2_legacy_op14", "legacy", 14, False),
    ("gpt2_legacy_op14_mask", "legacy", 14, True),
    ("gpt2_legacy_op17", "legacy", 17, False),
    ("gpt2_legacy_op17_mask", "legacy", 17, True),
    ("gpt2_dynamo_op18", "dynamo", 18, False),
    ("gpt2_dynamo_op18_mask", "dynamo", 18, True),
]
OPTIMUM_FIXTURE = "gpt2_optimum_past"


def ensure_logits_output(path: Path) -> None:
    onnx = c.require("onnx")
    m = onnx.load(str(path))
    outs = [o.name for o in m.graph.output]
    if outs[0] != "logits":
        print(f"  renaming graph output {outs[0]!r} -> 'logits'")
        c.rename_graph_output(m, outs[0], "logits")
        onnx.save_model(m, str(path))


def main() -> None:
    torch = c.require("torch")
    c.require("onnx")
    c.require("onnxruntime")
    c.require("onnxscript")
    c.optimum_cli()  # fail early if the optimum venv is missing

    model = c.make_gpt2(c.tiny_gpt2_config(), SEED)
    pretrained = c.MODELS / "tiny-gpt2"
    model.save_pretrained(str(pretrained))
    print(f"saved {c.rel(pretrained)} (torch {torch.__version__}, attention '{model.config._attn_implementation}')")

    c.FIXTURES.mkdir(parents=True, exist_ok=True)
    for stem, exporter, opset, with_mask in TORCH_FIXTURES:
        path = c.FIXTURES / f"{stem}.onnx"
        print(f"exporting {c.rel(path)}", flush=True)
        if exporter == "legacy":
            c.export_legacy(model, path, opset, with_mask)
        else:
            c.export_dynamo(model, path, opset, with_mask)
        ensure_logits_output(path)
        c.check_model(path)
        diff = c.verify_against_torch(model, path, with_mask, TOL)
        print(f"  checked; max |ORT - torch| = {diff:.3g}")

    path = c.FIXTURES / f"{OPTIMUM_FIXTURE}.onnx"
    print(f"exporting {c.rel(path)} with optimum", flush=True)
    produced = c.export_optimum_past(pretrained, path, c.MODELS / "tiny-gpt2-optimum-tmp")
    print(f"  optimum wrote {produced}; kept the past_key_values model")
    ensure_logits_output(path)
    c.check_model(path)
    diff = c.verify_optimum_against_torch(model, path, TOL)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}")

    print()
    for stem, *_ in TORCH_FIXTURES + [(OPTIMUM_FIXTURE,)]:
        print(c.describe(c.FIXTURES / f"{stem}.onnx"))


if __name__ == "__main__":
    main()
