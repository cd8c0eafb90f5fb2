"""Perplexity of a causal-LM ONNX model in onnxruntime, by the protocol snapshot-diff uses.

    /root/venvs/torch/bin/python tools/perplexity_ort.py model.onnx --text eval.txt \
        --tokenizer tokenizer.json [--window 512] [--json] [--check snapshot-diff.json]

Protocol (shared/design/MEASURING.md, same as `snapshot-diff --text`): tokenize the whole UTF-8
file with tokenizer.json, without special tokens; cut the ids into non-overlapping windows of
--window tokens (a last, shorter window is kept when it has at least 2 tokens); feed each window
from position 0 with batch 1 (attention_mask all ones, position_ids 0..n-1, token_type_ids 0 and
empty past_key_values.* when the model takes them); perplexity = exp(mean NLL of tokens 1..n of
every window), log-softmax in float64. onnxruntime runs on the CPU with 2 intra-op threads.

--check FILE reads the JSON that `snapshot-diff ORIGINAL CONVERTED --text ... --json` printed
(not a --save snapshot: those are rounded to 4 digits) and exits 1 unless its original-model perplexity agrees with this one
within --tolerance (default 0.1%). Needs only numpy, onnxruntime and tokenizers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

np = c.require("numpy")
tokenizers = c.require("tokenizers")

DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
          "tensor(int32)": "int32", "tensor(bool)": "bool"}


def windows(ids: list[int], window: int) -> list[list[int]]:
    size = max(window, 2)
    return [ids[i:i + size] for i in range(0, len(ids), size) if len(ids[i:i + size]) >= 2]


def feeds(session, ids: list[int]) -> dict:
    n = len(ids)
    out = {}
    for inp in session.get_inputs():
        dtype = DTYPES.get(inp.type)
        if dtype is None:
            c.fail(f"input {inp.name} has unsupported type {inp.type}")
        name = inp.name
        if name == "input_ids":
            value = np.array([ids])
        elif name == "attention_mask":
            value = np.ones((1, n))
        elif name == "position_ids":
            value = np.arange(n)[None, :]
        elif name == "token_type_ids":
            value = np.zeros((1, n))
        elif name.startswith("past_key_values") or name.startswith("past."):
            shape = inp.shape
            if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
                c.fail(f"input {name} {shape}: heads and head size must be fixed dims")
            value = np.zeros((1, shape[1], 0, shape[3]))
        else:
            c.fail(f"cannot derive input {name} from token ids")
        out[name] = value.astype(dtype)
    return out


def logits_name(session) -> str:
    names = [o.name for o in session.get_outputs()]
    for name in names:
        if "logits" in name:
            return name
    c.fail(f"no output named *logits* among {names}")


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--text", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--check", type=Path, help="a snapshot-diff --json output to agree with")
    ap.add_argument("--tolerance", type=float, default=0.001, help="relative (0.001 is 0.1%%)")
    args = ap.parse_args()

    text = args.text.read_text(encoding="utf-8")
    tok = tokenizers.Tokenizer.from_file(str(args.tokenizer))
    ids = tok.encode(text, add_special_tokens=False).ids
    chunks = windows(ids, args.window)
    if not chunks:
        c.fail(f"{args.text} has fewer than 2 tokens")
    session = c.ort_session(args.model)
    name = logits_name(session)
    total, count = 0.0, 0
    for chunk in chunks:
        (logits,) = session.run([name], feeds(session, chunk))
        lp = log_softmax(logits[0, :-1])
        vocab = lp.shape[-1]
        targets = np.array(chunk[1:])
        if targets.max() >= vocab:
            c.fail(f"token id {targets.max()} is outside the model's vocabulary of {vocab}")
        total -= lp[np.arange(len(targets)), targets].sum()
        count += len(targets)
    ppl = float(np.exp(total / count))
    result = {"model": str(args.model), "text": args.text.name, "bytes": [0, len(text.encode())],
              "window": args.window, "windows": len(chunks), "predicted_tokens": count,
              "perplexity": ppl}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.model.name}: perplexity {ppl:.4f} on {args.text.name} bytes 0..{result['bytes'][1]}, "
              f"{len(chunks)} windows of {args.window} tokens, {count} predicted tokens")
    if args.check:
        report = json.loads(args.check.read_text())
        ours = report.get("perplexity", {}).get("original")
        if ours is None:
            c.fail(f"{args.check} has no perplexity (run snapshot-diff with --text)")
        rel = abs(ours / ppl - 1.0)
        verdict = "agrees" if rel <= args.tolerance else "DISAGREES"
        print(f"snapshot-diff's {ours:.4f} {verdict} with onnxruntime's {ppl:.4f} "
              f"({rel * 100:.4f}% apart, tolerance {args.tolerance * 100:.2f}%)")
        if rel > args.tolerance:
            sys.exit(1)


if __name__ == "__main__":
    main()
