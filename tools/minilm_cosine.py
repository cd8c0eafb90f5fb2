"""Sentence-embedding agreement of converted MiniLM files with the fp32 original.

    /root/venvs/torch/bin/python tools/minilm_cosine.py MODEL.rbeonnx [MODEL2 ...] [--bin-dir target/release]

Runs the fp32 models/minilm/model.onnx and each given model in rbe-run on the 80 eval sentences
of tools/minilm_eval.py (same batches, same mean pooling) and prints, per model, the mean and
minimum cosine to the original's embeddings and the Spearman rho of pairwise similarities. For
files made outside minilm_eval.py (a calibrated conversion, say); needs export_minilm.py first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minilm_eval as me  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--bin-dir", type=Path, default=me.c.REPO / "target" / "release")
    args = ap.parse_args()
    feeds = me.batches(me.MODEL_DIR / "tokenizer.json")
    ref = me.embeddings(me.run_rbe(args.bin_dir, me.MODEL_DIR / "model.onnx", feeds), feeds)
    for model in args.models:
        r = me.compare(ref, me.embeddings(me.run_rbe(args.bin_dir, model, feeds), feeds))
        print(f"{model}: cosine mean {r['cos_mean']:.5f}, min {r['cos_min']:.5f}, "
              f"pairwise Spearman {r['pairwise_spearman']:.4f} (worst: {r['worst']!r})")


if __name__ == "__main__":
    main()
