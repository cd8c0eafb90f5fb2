"""Recipe: GPT-2 small shapes with random weights, for speed and memory work (not committed).

    /root/venvs/torch/bin/python tools/export_gpt2_small.py [--out DIR] [--skip-optimum]

Same recipe as tools/export_fixtures.py with GPT-2 small shapes (n_layer 12, n_embd 768,
n_head 12, vocab 50257, n_positions 1024; seed 0; every parameter perturbed with N(0, 0.02)).
Writes, under models/gpt2-small/ (gitignored):

    hf/                    save_pretrained directory (input of the optimum export)
    legacy_op17.onnx       torch legacy exporter, opset 17, input input_ids, output logits
    optimum_past.onnx      optimum-cli text-generation-with-past (optimum venv)
    refs/legacy_op17/b1_s128/{inputs,outputs}/*.npy   onnxruntime reference (golden/refs layout)

Models under 2 GB are saved with embedded weights; a larger one would get one external-data
file '<name>.onnx.data' beside it (relative path). Takes a few minutes on 2 cores.
`--out DIR` writes DIR/gpt2-small/ instead (e.g. a models directory outside the checkout);
`--skip-optimum` makes everything but optimum_past.onnx (no optimum venv needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

SEED = 0
TOL = 1e-3  # max |ORT - torch| on logits (12 layers of float32 accumulate more rounding)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=c.MODELS, help="models directory (default: models/)")
    ap.add_argument("--skip-optimum", action="store_true", help="do not make optimum_past.onnx")
    args = ap.parse_args()
    c.require("onnx")
    c.require("onnxruntime")
    np = c.require("numpy")
    if not args.skip_optimum:
        c.optimum_cli()  # fail early if the optimum venv is missing
    out = args.out / "gpt2-small"
    out.mkdir(parents=True, exist_ok=True)

    model = c.make_gpt2(c.gpt2_small_config(), SEED)
    model.save_pretrained(str(out / "hf"))
    print(f"saved {c.rel(out / 'hf')}", flush=True)

    legacy = out / "legacy_op17.onnx"
    print(f"exporting {c.rel(legacy)}", flush=True)
    c.export_legacy(model, legacy, 17, with_mask=False)  # < 2 GB: the exporter embeds the weights
    c.check_model(legacy)
    diff = c.verify_against_torch(model, legacy, False, TOL, shapes=((1, 1), (1, 128), (2, 16)))
    print(f"  checked; max |ORT - torch| = {diff:.3g}")

    optimum = out / "optimum_past.onnx"
    if args.skip_optimum:
        print(f"skipped {c.rel(optimum)} (--skip-optimum)")
    else:
        export_optimum(model, out, optimum)

    sess = c.ort_session(legacy)
    ids = c.token_ids("b1_s128", 1, 128, model.config.vocab_size)
    res = c.run_and_save(sess, {"input_ids": ids}, out / "refs" / "legacy_op17" / "b1_s128")
    print(f"wrote {c.rel(out / 'refs')}: logits {list(res['logits'].shape)}, "
          f"mean {float(np.mean(res['logits'])):.4g}")
    print()
    print(c.describe(legacy))
    if not args.skip_optimum:
        print(c.describe(optimum))


def export_optimum(model, out: Path, optimum: Path) -> None:
    """optimum_past.onnx from the hf/ directory (optimum venv), checked against torch."""
    print(f"exporting {c.rel(optimum)} with optimum", flush=True)
    produced = c.export_optimum_past(out / "hf", optimum, out / "optimum-tmp")
    print(f"  optimum wrote {produced}; kept the past_key_values model")
    c.check_model(optimum)
    diff = c.verify_optimum_against_torch(model, optimum, TOL)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}")


if __name__ == "__main__":
    main()
