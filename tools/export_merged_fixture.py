"""Export the committed tiny optimum merged decoder (tests/fixtures/gpt2_optimum_merged.onnx).

    /root/venvs/torch/bin/python tools/export_merged_fixture.py

The same tiny GPT-2 as tools/export_fixtures.py (same config, seed and perturbation, so the
same weights as every other gpt2_* fixture), saved with save_pretrained under
models/tiny-gpt2/ (gitignored), then exported in the optimum venv as optimum's merged decoder:
the first-step graph (no past inputs, present outputs) and the with-past graph, merged by
optimum.onnx.merge_decoders into one file whose `If` on the `use_cache_branch` input picks the
branch, every weight in the outer graph and read inside both branches.

Checked with onnx.checker and against PyTorch (prompt through the first-step branch, then one
step through the cache branch). Then run tools/references.py --only gpt2_optimum_merged.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

SEED = 0  # as tools/export_fixtures.py
TOL = 1e-4
STEM = "gpt2_optimum_merged"


def main() -> None:
    c.require("torch")
    onnx = c.require("onnx")
    c.require("onnxruntime")
    model = c.make_gpt2(c.tiny_gpt2_config(), SEED)
    pretrained = c.MODELS / "tiny-gpt2"
    model.save_pretrained(str(pretrained))
    path = c.FIXTURES / f"{STEM}.onnx"
    print(f"exporting {c.rel(path)} with optimum (merged)", flush=True)
    c.export_optimum_merged(pretrained, path, c.MODELS / "tiny-gpt2-merged-tmp")
    c.check_model(path)
    ifs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "If"]
    if len(ifs) != 1:
        c.fail(f"{path.name}: expected one If node in the outer graph, found {len(ifs)}")
    diff = c.verify_optimum_against_torch(model, path, TOL)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}")
    print(c.describe(path))


if __name__ == "__main__":
    main()
