"""Run every committed fixture in onnxruntime on fixed inputs and save inputs/outputs as .npy.

    /root/venvs/torch/bin/python tools/references.py

Writes golden/refs/<fixture>/<case>/inputs/<input name>.npy and .../outputs/<output name>.npy
(dtypes exactly as the graph declares them) and golden/refs/README.md. onnxruntime runs with the
CPUExecutionProvider and intra_op_num_threads=2. Only numpy, onnx and onnxruntime are needed.

Cases (token ids: numpy PCG64 seeded with crc32 of the shape name, e.g. "b2_s16", uniform in
[0, vocab) where vocab is the logits' last dim; the same shape name gives the same ids in every
fixture, so fixtures can be cross-checked):
  all torch fixtures      b1_s1, b1_s7, b1_s64, b2_s16 (masks all ones)
  *_mask fixtures         b2_s16 has right padding on the second row (last PAD mask entries 0),
                          b2_s16_leftpad has left padding on the second row (first PAD entries 0)
  gpt2_optimum_past       prompt_b1_s7 (past_len 0), step_b1_past7 (1 token, past = presents of
                          prompt_b1_s7), prompt_b2_s16 (second row left-padded by PAD, position_ids
                          cumsum(mask)-1 with 1 at padded slots as transformers' generate does),
                          step_b2_past16 (1 token per row, past = presents of prompt_b2_s16)
  gpt2_optimum_merged     the same four cases, use_cache_branch false for the prompts and true for
                          the steps (tools/export_merged_fixture.py)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

np = c.require("numpy")
ort = c.require("onnxruntime")

TORCH_FIXTURES = ["gpt2_legacy_op14", "gpt2_legacy_op14_mask", "gpt2_legacy_op17",
                  "gpt2_legacy_op17_mask", "gpt2_dynamo_op18", "gpt2_dynamo_op18_mask"]
OPTIMUM_FIXTURES = ["gpt2_optimum_past", "gpt2_optimum_merged"]
SHAPES = {"b1_s1": (1, 1), "b1_s7": (1, 7), "b1_s64": (1, 64), "b2_s16": (2, 16)}
PAD = 5  # padded positions on the second row of the padded b2 cases
CROSS_TOL = 1e-4  # fixtures share weights: their logits must agree to this


def vocab_of(session) -> int:
    dim = session.get_outputs()[0].shape[-1]
    if not isinstance(dim, int):
        c.fail(f"logits vocab dim is symbolic ({dim}); cannot pick the token id range")
    return dim


def torch_fixture_cases(vocab: int, with_mask: bool) -> dict[str, dict]:
    cases = {}
    for name, (b, s) in SHAPES.items():
        ids = c.token_ids(name, b, s, vocab)
        inputs = {"input_ids": ids}
        if with_mask:
            inputs["attention_mask"] = np.ones((b, s), np.int64)
        cases[name] = inputs
    if with_mask:
        b, s = SHAPES["b2_s16"]
        right = np.ones((b, s), np.int64)
        right[1, s - PAD:] = 0
        cases["b2_s16"]["attention_mask"] = right
        left = np.ones((b, s), np.int64)
        left[1, :PAD] = 0
        cases["b2_s16_leftpad"] = {"input_ids": c.token_ids("b2_s16", b, s, vocab), "attention_mask": left}
    return cases


def empty_past(session, batch: int) -> dict:
    past = {}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            _, heads, _, head_dim = i.shape
            past[i.name] = np.zeros((batch, heads, 0, head_dim), np.float32)
    return past


def past_from(outputs: dict) -> dict:
    return {k.replace("present.", "past_key_values.", 1): v for k, v in outputs.items()
            if k.startswith("present.")}


def positions(mask):
    pos = np.cumsum(mask, axis=-1) - 1
    pos[mask == 0] = 1
    return pos.astype(np.int64)


def run_torch_fixture(stem: str, out_root: Path) -> dict[str, dict]:
    path = c.FIXTURES / f"{stem}.onnx"
    sess = c.ort_session(path)
    results = {}
    for case, inputs in torch_fixture_cases(vocab_of(sess), stem.endswith("_mask")).items():
        results[case] = c.run_and_save(sess, inputs, out_root / stem / case)
    return results


def run_optimum_fixture(stem: str, out_root: Path) -> dict[str, dict]:
    sess = c.ort_session(c.FIXTURES / f"{stem}.onnx")
    vocab = vocab_of(sess)
    root = out_root / stem
    res = {}

    def run(case: str, inputs: dict, past_len: int) -> dict:
        res[case] = c.run_and_save(sess, c.cache_flag(sess, inputs, past_len), root / case)
        return res[case]

    ids = c.token_ids("b1_s7", 1, 7, vocab)
    mask = np.ones((1, 7), np.int64)
    run("prompt_b1_s7", {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask),
                         **empty_past(sess, 1)}, 0)
    step_ids = c.token_ids("step_b1_past7", 1, 1, vocab)
    run("step_b1_past7", {"input_ids": step_ids, "attention_mask": np.ones((1, 8), np.int64),
                          "position_ids": np.array([[7]], np.int64), **past_from(res["prompt_b1_s7"])}, 7)

    ids = c.token_ids("b2_s16", 2, 16, vocab)
    mask = np.ones((2, 16), np.int64)
    mask[1, :PAD] = 0
    run("prompt_b2_s16", {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask),
                          **empty_past(sess, 2)}, 0)
    step_ids = c.token_ids("step_b2_past16", 2, 1, vocab)
    step_mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
    run("step_b2_past16", {"input_ids": step_ids, "attention_mask": step_mask,
                           "position_ids": positions(step_mask)[:, -1:], **past_from(res["prompt_b2_s16"])}, 16)

    # Consistency (not saved): prompt + step must equal one pass over the 8 tokens.
    full_ids = np.concatenate([c.token_ids("b1_s7", 1, 7, vocab), c.token_ids("step_b1_past7", 1, 1, vocab)], 1)
    full_mask = np.ones((1, 8), np.int64)
    full = sess.run(["logits"], c.cache_flag(sess, {"input_ids": full_ids, "attention_mask": full_mask,
                                                    "position_ids": positions(full_mask), **empty_past(sess, 1)}, 0))[0]
    d = float(np.abs(full[:, 7] - res["step_b1_past7"]["logits"][:, 0]).max())
    print(f"  check: step_b1_past7 vs one 8-token pass: max |diff| = {d:.3g}")
    if d > CROSS_TOL:
        c.fail(f"{stem}: step logits differ from the full pass by {d:.3g}")
    return res


def cross_check(all_results: dict[str, dict]) -> None:
    """Same weights, same ids: logits of unpadded cases must agree across fixtures."""
    base = all_results[TORCH_FIXTURES[0]]
    worst = 0.0
    for stem in TORCH_FIXTURES[1:]:
        for case in SHAPES:
            if stem.endswith("_mask") and case == "b2_s16":
                continue  # padded there
            worst = max(worst, float(np.abs(all_results[stem][case]["logits"] - base[case]["logits"]).max()))
    for stem in OPTIMUM_FIXTURES:
        opt = all_results[stem]["prompt_b1_s7"]["logits"]
        worst = max(worst, float(np.abs(opt - base["b1_s7"]["logits"]).max()))
    past, merged = (all_results[s] for s in OPTIMUM_FIXTURES)
    for case in past:
        worst = max(worst, float(np.abs(merged[case]["logits"] - past[case]["logits"]).max()))
    print(f"  check: logits of all fixtures agree on unpadded cases: max |diff| = {worst:.3g}")
    if worst > CROSS_TOL:
        c.fail(f"fixtures disagree by {worst:.3g} (> {CROSS_TOL})")


def write_readme(out_root: Path, all_results: dict[str, dict]) -> None:
    lines = [
        "# Golden onnxruntime references for tests/fixtures/*.onnx",
        "",
        "Generated by `tools/references.py`; do not edit by hand. Regenerate with:",
        "",
        "    /root/venvs/torch/bin/python tools/references.py",
        "",
        f"onnxruntime {ort.__version__}, numpy {np.__version__}, CPUExecutionProvider, "
        f"intra_op_num_threads={c.ORT_THREADS}.",
        "",
        "Layout: `<fixture>/<case>/inputs/<graph input name>.npy` and "
        "`<fixture>/<case>/outputs/<graph output name>.npy`, one file per graph input and output, "
        "in the dtype the graph declares (input_ids, attention_mask, position_ids int64; "
        "logits, present.* float32). `<fixture>` is the stem of `tests/fixtures/<fixture>.onnx`.",
        "",
        "Token ids: numpy PCG64 seeded with crc32 of the shape name (`b2_s16`, `step_b1_past7`...), "
        "uniform in [0, vocab); the same shape name has the same ids in every fixture. "
        f"Padded cases pad the second row by {PAD}: `b2_s16` in `*_mask` fixtures on the right "
        "(trailing zeros), `b2_s16_leftpad` and the optimum `prompt_b2_s16` on the left "
        "(leading zeros). The optimum `step_*` cases feed the `present.*` outputs of the matching "
        "`prompt_*` case as `past_key_values.*`; position_ids are cumsum(mask) - 1, with 1 at padded "
        "slots. Outputs at padded query positions are whatever the graph computes; compare them "
        "only if you mean to.",
        "",
        "| fixture | case | inputs | outputs |",
        "| --- | --- | --- | --- |",
    ]
    for stem, cases in all_results.items():
        for case in cases:
            d = out_root / stem / case
            ins = ", ".join(f"{p.stem} {list(np.load(p).shape)}" for p in sorted((d / "inputs").glob("*.npy")))
            outs = ", ".join(f"{p.stem} {list(np.load(p).shape)}" for p in sorted((d / "outputs").glob("*.npy")))
            lines.append(f"| {stem} | {case} | {ins} | {outs} |")
    (out_root / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    out_root = c.GOLDEN_REFS
    missing = [s for s in TORCH_FIXTURES + OPTIMUM_FIXTURES if not (c.FIXTURES / f"{s}.onnx").exists()]
    if missing:
        c.fail(f"missing fixtures {missing}: run tools/export_fixtures.py and tools/export_merged_fixture.py first (see tools/README.md)")
    for stem in TORCH_FIXTURES + OPTIMUM_FIXTURES:
        if (out_root / stem).exists():
            shutil.rmtree(out_root / stem)
    all_results = {}
    for stem in TORCH_FIXTURES:
        print(f"{stem}", flush=True)
        all_results[stem] = run_torch_fixture(stem, out_root)
    for stem in OPTIMUM_FIXTURES:
        print(stem, flush=True)
        all_results[stem] = run_optimum_fixture(stem, out_root)
    cross_check(all_results)
    write_readme(out_root, all_results)
    total = sum(p.stat().st_size for p in out_root.rglob("*") if p.is_file())
    print(f"wrote {c.rel(out_root)} ({total / 1e6:.2f} MB), onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
