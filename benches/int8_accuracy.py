"""Accuracy of the int8-activation GEMV against the exact (f32-activation) one, on a trained
model's real activations: one generated token at a time (m = 1, the fused GEMV path).

    /root/venvs/torch/bin/python benches/int8_accuracy.py --onnx models/smollm2/model_past.onnx \
        --rbe MODEL.q4.rbeonnx --exact RBE_RUN_EXACT --int8 RBE_RUN_INT8 \
        [--tokenizer models/smollm2/tokenizer.json] [--text tools/texts/eval.txt] [--prefix 64] [--steps 32]

RBE_RUN_EXACT / RBE_RUN_INT8: rbe-run binaries built with `Activations::Exact` / `Int8` as the
default of `RbeTensor::matmul`. onnxruntime (fp32, the original model) runs the text's first
--prefix tokens, then teacher-forces the next --steps tokens one at a time; at every step the
same inputs (onnxruntime's past) go to both rbe-run binaries. Prints, over the steps: relative
RMSE of the int8 logits against the exact ones, mean KL(exact || int8), top-1 agreement, and
for each side its KL from fp32 and its perplexity on the teacher-forced tokens.
"""
import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def softmax(z):
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def kl(p, q):
    return float(np.sum(p * (np.log(p + 1e-30) - np.log(q + 1e-30))))


def run_ours(binary, model, feed, tmp):
    d = Path(tempfile.mkdtemp(dir=tmp))
    args = [str(binary), str(model)]
    for k, v in feed.items():
        np.save(d / f"{k}.npy", v)
        args += ["--input", f"{k}=@{d / (k + '.npy')}"]
    out = d / "out"
    subprocess.run(args + ["--save-outputs", str(out)], check=True, capture_output=True,
                   env={"RAYON_NUM_THREADS": "2"})
    return np.load(out / "logits.npy")[0, -1].astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--rbe", type=Path, required=True)
    ap.add_argument("--exact", type=Path, required=True)
    ap.add_argument("--int8", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, default=Path("models/smollm2/tokenizer.json"))
    ap.add_argument("--text", type=Path, default=Path("tools/texts/eval.txt"))
    ap.add_argument("--prefix", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    a = ap.parse_args()

    ids = Tokenizer.from_file(str(a.tokenizer)).encode(a.text.read_text()).ids
    ids = ids[: a.prefix + a.steps + 1]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(str(a.onnx), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    past_names = [n for n in names if n.startswith("past_key_values")]
    shape = {i.name: i.shape for i in s.get_inputs()}
    heads, dim = shape[past_names[0]][1], shape[past_names[0]][3]
    past = {n: np.zeros((1, heads, 0, dim), np.float32) for n in past_names}

    def feed(tokens, start):
        n = len(tokens)
        f = {"input_ids": np.array([tokens], np.int64),
             "attention_mask": np.ones((1, start + n), np.int64),
             "position_ids": np.arange(start, start + n, dtype=np.int64)[None]}
        f.update(past)
        return {k: v for k, v in f.items() if k in names}

    outs = s.run(None, feed(ids[: a.prefix], 0))
    onames = [o.name for o in s.get_outputs()]
    past = {n.replace("present", "past_key_values"): v for n, v in zip(onames, outs) if n.startswith("present")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(a.prefix, a.prefix + a.steps):
            f = feed([ids[t]], t)
            outs = s.run(None, f)
            ref = outs[0][0, -1].astype(np.float64)
            ex = run_ours(a.exact, a.rbe, f, tmp)
            i8 = run_ours(a.int8, a.rbe, f, tmp)
            past = {n.replace("present", "past_key_values"): v for n, v in zip(onames, outs) if n.startswith("present")}
            p_ref, p_ex, p_i8 = softmax(ref), softmax(ex), softmax(i8)
            nxt = ids[t + 1]
            rows.append(dict(
                rel=np.sqrt(np.mean((i8 - ex) ** 2)) / np.std(ex),
                kl_ex_i8=kl(p_ex, p_i8), top1=float(ex.argmax() == i8.argmax()),
                kl_ref_ex=kl(p_ref, p_ex), kl_ref_i8=kl(p_ref, p_i8),
                nll_ref=-np.log(p_ref[nxt]), nll_ex=-np.log(p_ex[nxt]), nll_i8=-np.log(p_i8[nxt])))
    m = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"{a.steps} steps after a {a.prefix}-token prefix of {a.text} ({a.onnx.name}, ours {a.rbe.name})")
    print(f"int8 vs exact logits: relative RMSE {m['rel']:.2e}, KL(exact||int8) {m['kl_ex_i8']:.2e} nats, "
          f"top-1 agreement {m['top1']:.3f}")
    print(f"KL from onnxruntime fp32: exact {m['kl_ref_ex']:.4f}, int8 {m['kl_ref_i8']:.4f} nats")
    print(f"perplexity on the {a.steps} tokens: fp32 {np.exp(m['nll_ref']):.3f}, "
          f"exact {np.exp(m['nll_ex']):.3f}, int8 {np.exp(m['nll_i8']):.3f}")


if __name__ == "__main__":
    main()
