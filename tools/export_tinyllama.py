"""Export a Llama-shaped 1.1B model for scale tests (not committed): TinyLlama-1.1B's
configuration (22 layers, hidden 2048, 32 query / 4 key-value heads, SwiGLU 5632, vocab 32000,
untied head) with random weights, through optimum's text-generation-with-past export, so the
file is over 2 GB and keeps its weights in external data.

    /root/venvs/torch/bin/python tools/export_tinyllama.py [--out models/tinyllama]

Writes OUT/model.onnx + OUT/model.onnx.data (4.4 GB, fp32, with past_key_values.* inputs),
and a byte-level BPE tokenizer.json (with config.json) trained on tools/texts/calibration.txt,
so `rbe-run OUT --prompt ...` can generate (random weights: the text is noise; what it measures
is memory and speed at this size). Needs the torch venv (torch, transformers, tokenizers) and
the optimum venv (tools/README.md); about 10 minutes and 14 GB of RAM on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

SEED = 0
VOCAB = 32000


def tinyllama_config():
    transformers = c.require("transformers")
    return transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                    num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                                    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                                    bos_token_id=1, eos_token_id=2)


def train_tokenizer(out: Path) -> None:
    """A byte-level BPE of at most VOCAB tokens trained on the calibration text: every id it
    gives is inside the model's vocabulary."""
    tokenizers = c.require("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(c.REPO / "tools" / "texts" / "calibration.txt")], trainer)
    tok.save(str(out / "tokenizer.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=c.MODELS / "tinyllama")
    args = ap.parse_args()
    torch = c.require("torch")
    c.optimum_cli()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    hf_dir, work = out / "hf", out / "optimum-work"
    print(f"building a random-weight TinyLlama-1.1B shape (torch {torch.__version__}, seed {SEED})", flush=True)
    model = c.make_llama(tinyllama_config(), SEED, "sdpa")
    params = sum(p.numel() for p in model.parameters())
    print(f"  {params:,} parameters; save_pretrained to {hf_dir}", flush=True)
    c.save_pretrained_for_optimum(model, None, hf_dir)
    del model
    print("exporting with optimum (text-generation-with-past)", flush=True)
    c.export_optimum_past(hf_dir, out / "model.onnx", work)
    train_tokenizer(out)
    shutil.copy(hf_dir / "config.json", out / "config.json")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}) + "\n")
    shutil.rmtree(hf_dir)
    print(c.describe(out / "model.onnx"))
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    print("wrote", ", ".join(f"{name} ({size:,} bytes)" for name, size in sorted(sizes.items())))


if __name__ == "__main__":
    main()
