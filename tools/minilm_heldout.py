"""Compares rbe-convert settings on MiniLM without touching the eval sentences.

    /root/venvs/torch/bin/python tools/minilm_heldout.py NAME="ARGS" [NAME2="ARGS2" ...] \
        [--bin-dir target/release] [--text tools/texts/calibration.txt] [--held-out 0.25]

Splits the calibration text at a sentence boundary: the first part is what every model is
calibrated on (written to a temporary file and passed as --calibrate), the sentences of the
last part (--held-out share of the sentences) are what the settings are judged on. Each NAME
is converted from models/minilm/model.onnx with `--calibrate FIRST_PART --tokenizer ... ARGS`
and its file size, mean and minimum sentence-embedding cosine to fp32 on the held-out
sentences (mean pooling, as tools/minilm_eval.py) are printed. For choosing knobs honestly:
the eval sentences of minilm_eval.py stay out of the choice.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tokenizers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minilm_eval as me  # noqa: E402

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def split_text(text: str, held_out: float) -> tuple[str, list[str]]:
    """The text before the held-out sentences, and the held-out sentences (the last share)."""
    spans, start = [], 0
    for m in SENTENCE_END.finditer(text):
        if text[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    n = max(1, round(len(spans) * held_out))
    if n >= len(spans):
        sys.exit(f"only {len(spans)} sentences; nothing left to calibrate on")
    cut = spans[-n][0]
    return text[:cut], [" ".join(text[a:b].split()) for a, b in spans[-n:]]


def batches(tokenizer_json: Path, sentences: list[str]) -> list[dict]:
    """`sentences` in batches of minilm_eval's size, each padded to its longest sentence."""
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding()
    out = []
    for i in range(0, len(sentences), me.BATCH):
        enc = tok.encode_batch(sentences[i:i + me.BATCH])
        out.append({"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("settings", nargs="+", help='NAME="rbe-convert arguments" (may be empty)')
    ap.add_argument("--bin-dir", type=Path, default=me.c.REPO / "target" / "release")
    ap.add_argument("--text", type=Path, default=me.c.REPO / "tools" / "texts" / "calibration.txt")
    ap.add_argument("--held-out", type=float, default=0.25)
    args = ap.parse_args()
    if not 0.0 < args.held_out < 1.0:
        sys.exit("--held-out must be between 0 and 1")
    fit, sentences = split_text(args.text.read_text(encoding="utf-8"), args.held_out)
    tok = me.MODEL_DIR / "tokenizer.json"
    feeds = batches(tok, sentences)
    print(f"{len(sentences)} held-out sentences of {args.text.name}; calibrated on its first {len(fit)} characters")
    ref = me.embeddings(me.run_rbe(args.bin_dir, me.MODEL_DIR / "model.onnx", feeds), feeds)
    with tempfile.TemporaryDirectory() as tmp:
        fit_path = Path(tmp) / "fit.txt"
        fit_path.write_text(fit, encoding="utf-8")
        for setting in args.settings:
            name, _, extra = setting.partition("=")
            out = Path(tmp) / f"{name}.rbeonnx"
            cmd = [str(args.bin_dir / "rbe-convert"), str(me.MODEL_DIR / "model.onnx"), "-o", str(out),
                   "--calibrate", str(fit_path), "--tokenizer", str(tok), *shlex.split(extra)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"{name}: rbe-convert failed: {res.stderr.strip()[-2000:]}")
            cos = (ref * me.embeddings(me.run_rbe(args.bin_dir, out, feeds), feeds)).sum(1)
            print(f"{name}: {out.stat().st_size} bytes, held-out cosine mean {cos.mean():.5f}, min {cos.min():.5f}")


if __name__ == "__main__":
    main()
