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


def verify_against_torch(model, path: Path, with_mask: bool) -> float:
    """Run ORT and PyTorch on a few shapes (right and left padding when there is a mask)."""
    torch = c.require("torch")
    np = c.require("numpy")
    sess = c.ort_session(path)
    rng = np.random.default_rng(99)
    worst = 0.0
    shapes = [(1, 1), (1, 7), (2, 16), (3, 128)]
    for b, s in shapes:
        ids = rng.integers(0, model.config.vocab_size, (b, s), dtype=np.int64)
        masks = [np.ones((b, s), np.int64)]
        if with_mask and b > 1 and s > 4:
            right = masks[0].copy()
            right[-1, s - 3:] = 0
            left = masks[0].copy()
            left[-1, :3] = 0
            masks += [right, left]
        for mask in masks:
            feed = {"input_ids": ids}
            with torch.no_grad():
                if with_mask:
                    feed["attention_mask"] = mask
                    ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                use_cache=False).logits.numpy()
                else:
                    ref = model(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
            got = sess.run(["logits"], feed)[0]
            if got.shape != ref.shape:
                c.fail(f"{path.name}: logits shape {got.shape} != torch {ref.shape} for {b}x{s}")
            # Compare only positions whose token is attended (padded query rows are garbage
            # in both and may differ).
            keep = mask.astype(bool)
            diff = float(np.abs(got[keep] - ref[keep]).max())
            worst = max(worst, diff)
            if not np.isfinite(got).all():
                print(f"  note: {path.name} gives non-finite logits for {b}x{s} mask={mask.tolist()}")
    if worst > TOL:
        c.fail(f"{path.name}: onnxruntime differs from PyTorch by {worst:.3g} (> {TOL})")
    return worst


def verify_optimum_against_torch(model, path: Path) -> float:
    """Prompt (past_len 0) then one step with the returned presents, against a full PyTorch
    forward over prompt + step token, for an unpadded and a left-padded batch."""
    torch = c.require("torch")
    np = c.require("numpy")
    sess = c.ort_session(path)
    n_layer = model.config.n_layer
    heads, head_dim = model.config.n_head, model.config.n_embd // model.config.n_head
    rng = np.random.default_rng(98)
    worst = 0.0
    for b, s, pad in [(1, 7, 0), (2, 12, 3)]:
        ids = rng.integers(0, model.config.vocab_size, (b, s + 1), dtype=np.int64)
        mask = np.ones((b, s + 1), np.int64)
        mask[-1, :pad] = 0
        pos = np.clip(np.cumsum(mask, -1) - 1, 0, None)
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                        position_ids=torch.from_numpy(pos), use_cache=False).logits.numpy()
        past = {f"past_key_values.{i}.{kv}": np.zeros((b, heads, 0, head_dim), np.float32)
                for i in range(n_layer) for kv in ("key", "value")}
        names = [o.name for o in sess.get_outputs()]
        out = dict(zip(names, sess.run(names, {"input_ids": ids[:, :s], "attention_mask": mask[:, :s],
                                               "position_ids": pos[:, :s], **past})))
        past = {k.replace("present.", "past_key_values."): v for k, v in out.items() if k.startswith("present.")}
        step = sess.run(["logits"], {"input_ids": ids[:, s:], "attention_mask": mask,
                                      "position_ids": pos[:, s:], **past})[0]
        got = np.concatenate([out["logits"], step], axis=1)
        keep = mask.astype(bool)
        worst = max(worst, float(np.abs(got[keep] - ref[keep]).max()))
    if worst > TOL:
        c.fail(f"{path.name}: onnxruntime differs from PyTorch by {worst:.3g} (> {TOL})")
    return worst


def main() -> None:
    torch = c.require("torch")
    c.require("onnx")
    c.require("onnxruntime")
    c.require("onnxscript")

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
        diff = verify_against_torch(model, path, with_mask)
        print(f"  checked; max |ORT - torch| = {diff:.3g}")

    path = c.FIXTURES / f"{OPTIMUM_FIXTURE}.onnx"
    print(f"exporting {c.rel(path)} with optimum", flush=True)
    produced = c.export_optimum_past(pretrained, path, c.MODELS / "tiny-gpt2-optimum-tmp")
    print(f"  optimum wrote {produced}; kept the past_key_values model")
    ensure_logits_output(path)
    c.check_model(path)
    diff = verify_optimum_against_torch(model, path)
    print(f"  checked prompt + step; max |ORT - torch| = {diff:.3g}")

    print()
    for stem, *_ in TORCH_FIXTURES + [(OPTIMUM_FIXTURE,)]:
        print(c.describe(c.FIXTURES / f"{stem}.onnx"))


if __name__ == "__main__":
    main()
