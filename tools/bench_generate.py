"""Generation speed with the KV cache, token by token: our rbe-run against an onnxruntime loop.

    /root/venvs/torch/bin/python tools/bench_generate.py [--models DIR] [--prompt-tokens 16]
                                                          [--new-tokens 256] [--rounds 3] [--json]

GPT-2 small's optimum_past export (random weights; tools/export_gpt2_small.py and
tools/ort_baselines.py make the files). Both sides run the same greedy loop: the prompt once, then
one token per step, each step's present.* fed back as the next past_key_values.*, until
--new-tokens tokens; the figure is the time of the steps after the prompt, per token (ms). Ours:
`target/release/rbe-run DIR --prompt "t464 t13 ..." --max-new-tokens N [--int8-activations]`
(RAYON_NUM_THREADS=2), DIR a temp directory linking the model beside a word-level tokenizer
whose token i is the word "t<i>" (the weights are random: there is no vocabulary to decode, and
no end token stops the loop early); its "generated: N tokens, X tokens/s" line. onnxruntime: in
this process, 2 intra-op threads, sequential; each step's outputs stay OrtValues bound as the
next step's inputs (IOBinding), the argmax of the last logits row in numpy. Rounds alternate
the order of the sides; a side's figure is the median over rounds. Run `cargo build --release`
first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

np = c.require("numpy")
ort = c.require("onnxruntime")

GENERATED_LINE = re.compile(r"generated: (\d+) tokens, ([0-9.]+) tokens/s")
VOCAB = 50257


def synthetic_tokenizer(path: Path) -> None:
    """A word-level tokenizer.json: token i is the word "t<i>", words split on whitespace."""
    tokenizers = c.require("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))


def prompt_ids(n: int) -> list[int]:
    rng = np.random.default_rng(0)
    return [int(i) for i in rng.integers(0, VOCAB, n)]


def ours_ms_per_token(rbe_run: Path, model: Path, tokenizer: Path, ids: list[int], new: int, flags: list[str]) -> float:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / ("model" + model.suffix)).symlink_to(model.resolve())
        (Path(d) / "tokenizer.json").symlink_to(tokenizer)
        cmd = [str(rbe_run), d, "--prompt", " ".join(f"t{i}" for i in ids), "--max-new-tokens", str(new)] + flags
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RAYON_NUM_THREADS=str(c.ORT_THREADS)))
    m = GENERATED_LINE.search(res.stderr)
    if res.returncode != 0 or not m:
        c.fail(f"{' '.join(cmd)} failed: {res.stderr.strip()[-400:]}")
    if int(m.group(1)) != new:
        c.fail(f"rbe-run generated {m.group(1)} tokens, not {new}")
    return 1e3 / float(m.group(2))


def ort_ms_per_token(session, ids: list[int], new: int) -> float:
    """Greedy loop on an optimum past export; ms per token over the steps after the prompt."""
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    past_names = [n for n in names if n.startswith("past_key_values")]
    layout = {i.name: i.shape for i in session.get_inputs()}
    heads, head_dim = layout[past_names[0]][1], layout[past_names[0]][3]
    binding = session.io_binding()
    past = {n: ort.OrtValue.ortvalue_from_numpy(np.zeros((1, heads, 0, head_dim), np.float32)) for n in past_names}
    tokens = list(ids)
    step_ids = ids
    start = None
    for step in range(new):
        if step == 1:
            start = time.perf_counter()
        length = len(tokens)
        feed = {"input_ids": np.array([step_ids], np.int64),
                "attention_mask": np.ones((1, length), np.int64),
                "position_ids": np.arange(length - len(step_ids), length, dtype=np.int64)[None]}
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, value in feed.items():
            if name in names:
                binding.bind_cpu_input(name, value)
        for name, value in past.items():
            binding.bind_ortvalue_input(name, value)
        for name in outputs:
            binding.bind_output(name)
        session.run_with_iobinding(binding)
        values = dict(zip(outputs, binding.get_outputs()))
        past = {p: values["present" + p[len("past_key_values"):]] for p in past_names}
        next_id = int(np.argmax(values["logits"].numpy()[0, -1]))
        tokens.append(next_id)
        step_ids = [next_id]
    return (time.perf_counter() - start) * 1e3 / (new - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=c.MODELS)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.rounds < 1:
        c.fail("--new-tokens must be at least 2, --prompt-tokens and --rounds at least 1")
    small = args.models / "gpt2-small"
    files = {"fp32": small / "optimum_past.onnx", "q4": small / "optimum_past.q4.rbeonnx",
             "int4": small / "optimum_past.ort_int4.onnx", "int4 acc4": small / "optimum_past.ort_int4_acc4.onnx"}
    missing = [c.rel(p) for p in files.values() if not p.exists()]
    if missing:
        c.fail(f"missing {', '.join(missing)}: make them with tools/export_gpt2_small.py, tools/ort_baselines.py and rbe-convert --preset q4")
    rbe_run = Path(os.environ.get("CARGO_TARGET_DIR", c.REPO / "target")) / "release" / "rbe-run"
    if not rbe_run.exists():
        c.fail(f"{rbe_run} not found: cargo build --release")
    ours = {"ours fp32": (files["fp32"], []), "ours q4": (files["q4"], []),
            "ours q4 int8": (files["q4"], ["--int8-activations"])}
    sessions = {f"ort {k}": c.ort_session(files[k]) for k in ("fp32", "int4", "int4 acc4")}
    ids = prompt_ids(args.prompt_tokens)
    times: dict[str, list[float]] = {k: [] for k in [*ours, *sessions]}
    with tempfile.TemporaryDirectory() as d:
        tokenizer = Path(d) / "tokenizer.json"
        synthetic_tokenizer(tokenizer)
        for r in range(args.rounds):
            sides = [*ours, *sessions]
            for label in sides if r % 2 == 0 else reversed(sides):
                if label in ours:
                    model, flags = ours[label]
                    ms = ours_ms_per_token(rbe_run, model, tokenizer, ids, args.new_tokens, flags)
                else:
                    ms = ort_ms_per_token(sessions[label], ids, args.new_tokens)
                times[label].append(ms)
                print(f"round {r + 1}: {label} {ms:.2f} ms/token", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    pairs = [("ours fp32", "ort fp32"), ("ours q4", "ort int4"), ("ours q4", "ort int4 acc4"), ("ours q4 int8", "ort int4 acc4")]
    if args.json:
        print(json.dumps({"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "rounds": times,
                          "median_ms_per_token": med, "ratios": {f"{a} / {b}": med[a] / med[b] for a, b in pairs}}, indent=1))
        return
    print(f"GPT-2 small, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens (ms per token after the first, median of {args.rounds} rounds)")
    for a, b in pairs:
        print(f"  {a:<13} {med[a]:7.2f}   {b:<13} {med[b]:7.2f}   ratio {med[a] / med[b]:.2f}x")


if __name__ == "__main__":
    main()
