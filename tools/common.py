"""Shared helpers for the tools/ scripts (fixture export, reference outputs, real-model recipes).

Imported by scripts that run in the torch venv (/root/venvs/torch). Heavy imports (torch,
transformers) happen inside the functions that need them so that references.py only needs
numpy + onnx + onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN_REFS = REPO / "golden" / "refs"
MODELS = REPO / "models"

TORCH_VENV = Path(os.environ.get("RBE_TORCH_VENV", "/root/venvs/torch"))
OPTIMUM_VENV = Path(os.environ.get("RBE_OPTIMUM_VENV", "/root/venvs/optimum"))

TORCH_VENV_HINT = (
    f"run this script with {TORCH_VENV}/bin/python (torch, transformers 5.x, onnx, onnxruntime, "
    "onnxscript, numpy, safetensors, tokenizers); see tools/README.md"
)
OPTIMUM_VENV_HINT = (
    f"create it with: python3 -m venv {OPTIMUM_VENV} && "
    f"{OPTIMUM_VENV}/bin/pip install optimum-onnx onnxruntime accelerate torch "
    "(optimum-onnx pins transformers 4.57, so it needs its own venv; override with RBE_OPTIMUM_VENV)"
)

# Offline always: nothing may be fetched from a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ORT_THREADS = 2
PERTURB_STD = 0.02


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def require(module: str, hint: str = TORCH_VENV_HINT):
    """Import a module or exit with a message that says which venv/command provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        fail(f"python module '{module}' is missing in {sys.prefix} ({e}); {hint}")


def rel(path: Path) -> str:
    for p in (Path(path).absolute(), Path(path).resolve()):  # a symlink in the repo stays relative
        try:
            return str(p.relative_to(REPO))
        except ValueError:
            pass
    return str(path)


# --------------------------------------------------------------------------- model building


def tiny_gpt2_config():
    transformers = require("transformers")
    # bos/eos set inside the vocabulary (GPT-2's default 50256 is not), which only silences
    # transformers' config warnings; it changes no weight and no graph.
    return transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128,
                                   bos_token_id=999, eos_token_id=999)


def gpt2_small_config():
    transformers = require("transformers")
    return transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)


def max_positions(config) -> int:
    """Context length of a GPT-2 (n_positions) or Llama-style (max_position_embeddings) config."""
    return getattr(config, "n_positions", None) or config.max_position_embeddings


def kv_layout(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of the past_key_values.* tensors
    [batch, kv heads, past, head size], for GPT-2 and Llama-style (grouped-query) configs."""
    if getattr(config, "n_layer", None) is not None:  # GPT2Config
        return config.n_layer, config.n_head, config.n_embd // config.n_head
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


def make_gpt2(config, seed: int):
    """GPT-2 with random init (seeded) and every parameter perturbed with N(0, PERTURB_STD).

    The perturbation makes every initializer distinct (plain init has zero biases and unit
    LayerNorm weights, which exporters merge or drop; see ONNX-EXPORTS.md). The default
    attention implementation (SDPA) is kept, as a user export would.
    """
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():  # tied wte/lm_head appears once
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * PERTURB_STD)
    return model


def make_llama(config, seed: int, attention: str):
    """Llama-style causal LM (RMSNorm, RoPE, grouped-query attention, SwiGLU) with random init
    (seeded) and every parameter perturbed with N(0, PERTURB_STD), attention implementation
    `attention` ("eager" for the legacy exporter, which cannot export SDPA with GQA)."""
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(seed)
    config._attn_implementation = attention
    model = transformers.LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * PERTURB_STD)
    return model


def save_pretrained_for_optimum(model, tok, hf_dir: Path) -> None:
    """save_pretrained (and the tokenizer's, if any), then make config.json readable by
    transformers 4.57 (the optimum venv): 5.x writes rope_theta only inside rope_parameters,
    which 4.57 ignores (it would fall back to rope_theta 10000 silently), so it is written at
    the top level too."""
    import json
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    model.save_pretrained(str(hf_dir))
    if tok is not None:
        tok.save_pretrained(str(hf_dir))
    cfg_path = hf_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" not in cfg and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        fail(f"rope_parameters {rope}: only the default rope is handled for transformers 4.57")
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


@contextlib.contextmanager
def no_packed_sequence_detection():
    """transformers 5.x calls aten::diff to detect packed sequences when no attention mask is
    given; the legacy exporter cannot export it. Disable the detection during export."""
    masking_utils = require("transformers.masking_utils")
    orig = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = orig


def logits_wrapper(model, with_mask: bool):
    """nn.Module whose forward takes (input_ids[, attention_mask]) and returns logits only."""
    torch = require("torch")

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    class LogitsNoMask(Logits):
        def forward(self, input_ids):
            return self.model(input_ids=input_ids, use_cache=False).logits

    return (Logits if with_mask else LogitsNoMask)().eval()


def example_inputs(with_mask: bool, batch: int = 2, seq: int = 8):
    torch = require("torch")
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, 1000, (batch, seq), generator=g, dtype=torch.int64)
    if not with_mask:
        return (ids,)
    return (ids, torch.ones((batch, seq), dtype=torch.int64))


# --------------------------------------------------------------------------- exporters


def export_legacy(model, path: Path, opset: int, with_mask: bool) -> None:
    """torch legacy (TorchScript) exporter, dynamic batch and sequence axes, output 'logits'."""
    torch = require("torch")
    names = ["input_ids", "attention_mask"] if with_mask else ["input_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), no_packed_sequence_detection():
        torch.onnx.export(
            logits_wrapper(model, with_mask),
            example_inputs(with_mask),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def export_dynamo(model, path: Path, opset: int, with_mask: bool) -> None:
    """torch.export-based exporter, dynamic batch/sequence, weights embedded in the .onnx file."""
    torch = require("torch")
    names = ["input_ids", "attention_mask"] if with_mask else ["input_ids"]
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=1, max=max_positions(model.config))
    shapes = {n: {0: batch, 1: seq} for n in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            logits_wrapper(model, with_mask),
            example_inputs(with_mask),
            dynamo=True,
            opset_version=opset,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def optimum_cli() -> Path:
    cli = OPTIMUM_VENV / "bin" / "optimum-cli"
    if not cli.exists():
        fail(f"{cli} not found: the optimum venv is missing; {OPTIMUM_VENV_HINT}")
    return cli


def export_optimum_past(pretrained_dir: Path, out_path: Path, work_dir: Path) -> list[str]:
    """optimum-cli text-generation-with-past export (in the optimum venv) of a save_pretrained
    directory; keeps the one decoder model that takes past_key_values.* inputs and moves it
    (with any external-data file, renamed and re-linked) to out_path. Returns optimum's file list."""
    onnx = require("onnx")
    if work_dir.exists():
        shutil.rmtree(work_dir)
    cmd = [str(optimum_cli()), "export", "onnx", "--model", str(pretrained_dir),
           "--task", "text-generation-with-past", str(work_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    print("  $", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        fail(f"optimum export failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    produced = sorted(p.name for p in work_dir.iterdir())
    candidates = []
    for p in sorted(work_dir.glob("*.onnx")):
        m = onnx.load(str(p), load_external_data=False)
        if any(i.name.startswith("past_key_values.") for i in m.graph.input):
            candidates.append(p)
    if len(candidates) != 1:
        fail(f"expected exactly one optimum model with past_key_values inputs in {work_dir}, "
             f"found {[c.name for c in candidates]} among {produced}")
    save_single_or_with_data(candidates[0], out_path)
    shutil.rmtree(work_dir)
    return produced


# Runs in the optimum venv: the decoder without past inputs but with present outputs (optimum's
# first-step model), the decoder with past, and optimum's own merge of the two into one file
# whose If on use_cache_branch picks the branch (all weights in the outer graph).
_MERGE_SCRIPT = """
import sys
from pathlib import Path
from transformers import AutoConfig
from optimum.exporters.onnx import main_export
from optimum.exporters.onnx.model_configs import GPT2OnnxConfig
from optimum.onnx import merge_decoders
pretrained, work = sys.argv[1], Path(sys.argv[2])
config = AutoConfig.from_pretrained(pretrained)
first = GPT2OnnxConfig(config, task="text-generation", use_past=True, use_past_in_inputs=False)
main_export(pretrained, output=work / "first", task="text-generation-with-past",
            custom_onnx_configs={"model": first}, no_post_process=True)
main_export(pretrained, output=work / "past", task="text-generation-with-past", no_post_process=True)
merge_decoders(str(work / "first" / "model.onnx"), str(work / "past" / "model.onnx"),
               save_path=str(work / "merged.onnx"), strict=False)
"""


def export_optimum_merged(pretrained_dir: Path, out_path: Path, work_dir: Path) -> None:
    """optimum's merged GPT-2 decoder (one If on use_cache_branch choosing the first-step or the
    with-past graph, as optimum's ORTModelForCausalLM files are), made in the optimum venv from a
    save_pretrained directory and saved at out_path."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    python = OPTIMUM_VENV / "bin" / "python"
    if not python.exists():
        fail(f"{python} not found: the optimum venv is missing; {OPTIMUM_VENV_HINT}")
    cmd = [str(python), "-c", _MERGE_SCRIPT, str(pretrained_dir), str(work_dir)]
    print(f"  $ {python} -c <merge script> {pretrained_dir} {work_dir}", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        fail(f"optimum merged export failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    save_single_or_with_data(work_dir / "merged.onnx", out_path)
    shutil.rmtree(work_dir)


def cache_flag(session, feed: dict, past_len: int) -> dict:
    """feed plus use_cache_branch (true once there is a cache) when session is a merged decoder."""
    np = require("numpy")
    if any(i.name == "use_cache_branch" for i in session.get_inputs()):
        return {**feed, "use_cache_branch": np.array([past_len > 0])}
    return feed


def save_single_or_with_data(src: Path, dst: Path) -> None:
    """Re-save an ONNX model at dst: embedded when it fits under 2 GB, else with one external
    data file '<dst name>.data' beside it (relative location)."""
    onnx = require("onnx")
    save_proto(onnx.load(str(src)), dst)  # loads external data, if any, from src's directory


def save_proto(m, dst: Path) -> None:
    """Save an in-memory ModelProto at dst: embedded when it fits under 2 GB, else with one
    external data file '<dst name>.data' beside it (relative location). Replaces old files."""
    onnx = require("onnx")
    dst.parent.mkdir(parents=True, exist_ok=True)
    for old in (dst, dst.with_name(dst.name + ".data")):
        old.unlink(missing_ok=True)
    try:
        small = m.ByteSize() < 2_000_000_000
    except Exception:  # protobuf refuses to even size a message past 2 GB
        small = False
    if small:
        onnx.save_model(m, str(dst))
    else:
        onnx.save_model(m, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=dst.name + ".data", size_threshold=1024)


def rename_graph_output(model_proto, old: str, new: str) -> None:
    """Rename a graph output (and every node input/output that uses that value)."""
    for node in model_proto.graph.node:
        for i, n in enumerate(node.output):
            if n == old:
                node.output[i] = new
        for i, n in enumerate(node.input):
            if n == old:
                node.input[i] = new
    for o in model_proto.graph.output:
        if o.name == old:
            o.name = new


# --------------------------------------------------------------------------- checks / summaries


def check_model(path: Path) -> None:
    """onnx.checker on the file (full check incl. shape inference) and an onnxruntime load."""
    onnx = require("onnx")
    onnx.checker.check_model(str(path), full_check=True)
    ort_session(path)


def ort_session(path: Path):
    """onnxruntime CPU session as every figure uses it: intra_op_num_threads=ORT_THREADS (2),
    inter_op_num_threads=1, sequential execution (MEASURING.md)."""
    ort = require("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = ORT_THREADS
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _dim(d) -> str:
    if d.HasField("dim_value"):
        return str(d.dim_value)
    return d.dim_param or "?"


def value_info_str(vi) -> str:
    onnx = require("onnx")
    t = vi.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
    shape = ", ".join(_dim(d) for d in t.shape.dim)
    return f"{vi.name}: {dtype} [{shape}]"


def describe(path: Path) -> str:
    """Inputs, outputs, opset imports and sorted (domain, op type) counts of an ONNX file."""
    onnx = require("onnx")
    m = onnx.load(str(path), load_external_data=False)
    ops: dict[tuple[str, str], int] = {}
    for n in m.graph.node:
        key = (n.domain or "ai.onnx", n.op_type)
        ops[key] = ops.get(key, 0) + 1
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import)
    n_params = sum(int(_numel(t)) for t in m.graph.initializer)
    lines = [f"{rel(path)}  ({path.stat().st_size} bytes, opsets {opsets}, "
             f"{len(m.graph.node)} nodes, {len(m.graph.initializer)} initializers, {n_params} params)"]
    lines += ["  input  " + value_info_str(i) for i in m.graph.input]
    lines += ["  output " + value_info_str(o) for o in m.graph.output]
    lines.append("  ops    " + ", ".join(f"{d}:{t} x{c}" for (d, t), c in sorted(ops.items())))
    return "\n".join(lines)


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


# --------------------------------------------------------------------------- export checks


def verify_against_torch(model, path: Path, with_mask: bool, tol: float,
                         shapes=((1, 1), (1, 7), (2, 16), (3, 128))) -> float:
    """Run ORT and PyTorch on a few shapes (right and left padding when there is a mask);
    exit if logits at attended positions differ by more than tol. Returns the max |diff|."""
    torch = require("torch")
    np = require("numpy")
    sess = ort_session(path)
    rng = np.random.default_rng(99)
    worst = 0.0
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
                fail(f"{path.name}: logits shape {got.shape} != torch {ref.shape} for {b}x{s}")
            # Compare only positions whose token is attended (padded query rows are garbage
            # in both and may differ).
            keep = mask.astype(bool)
            diff = float(np.abs(got[keep] - ref[keep]).max())
            worst = max(worst, diff)
            if not np.isfinite(got).all():
                print(f"  note: {path.name} gives non-finite logits for {b}x{s} mask={mask.tolist()}")
    if worst > tol:
        fail(f"{path.name}: onnxruntime differs from PyTorch by {worst:.3g} (> {tol})")
    return worst


def verify_optimum_against_torch(model, path: Path, tol: float) -> float:
    """Prompt (past_len 0) then one step with the returned presents, against a full PyTorch
    forward over prompt + step token, for an unpadded and a left-padded batch."""
    torch = require("torch")
    np = require("numpy")
    sess = ort_session(path)
    n_layer, heads, head_dim = kv_layout(model.config)
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
        prompt = {"input_ids": ids[:, :s], "attention_mask": mask[:, :s], "position_ids": pos[:, :s], **past}
        out = dict(zip(names, sess.run(names, cache_flag(sess, prompt, 0))))
        past = {k.replace("present.", "past_key_values."): v for k, v in out.items() if k.startswith("present.")}
        step = {"input_ids": ids[:, s:], "attention_mask": mask, "position_ids": pos[:, s:], **past}
        step = sess.run(["logits"], cache_flag(sess, step, s))[0]
        got = np.concatenate([out["logits"], step], axis=1)
        keep = mask.astype(bool)
        worst = max(worst, float(np.abs(got[keep] - ref[keep]).max()))
    if worst > tol:
        fail(f"{path.name}: onnxruntime differs from PyTorch by {worst:.3g} (> {tol})")
    return worst


# --------------------------------------------------------------------------- reference cases


def case_rng(case: str):
    """Deterministic numpy generator per case name (independent of run order and fixture), so
    the same case name gets the same token ids in every fixture."""
    np = require("numpy")
    return np.random.default_rng(zlib.crc32(case.encode()))


def token_ids(name: str, batch: int, seq: int, vocab: int):
    """Token ids [batch, seq] int64, uniform in [0, vocab), determined by the name only."""
    np = require("numpy")
    return case_rng(name).integers(0, vocab, (batch, seq), dtype=np.int64)


def graph_dtypes(session) -> dict[str, "object"]:
    """Input name -> numpy dtype, as declared by the graph."""
    np = require("numpy")
    table = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
             "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
    out = {}
    for i in session.get_inputs():
        if i.type not in table:
            fail(f"input {i.name} has unsupported type {i.type}")
        out[i.name] = table[i.type]
    return out


def run_and_save(session, inputs: dict, case_dir: Path) -> dict:
    """Cast inputs to the declared dtypes, check they match the graph's input names exactly,
    run, and save inputs/<name>.npy and outputs/<name>.npy under case_dir. Returns outputs."""
    np = require("numpy")
    dtypes = graph_dtypes(session)
    if set(inputs) != set(dtypes):
        fail(f"case {case_dir}: inputs {sorted(inputs)} != graph inputs {sorted(dtypes)}")
    feed = {k: np.ascontiguousarray(np.asarray(v).astype(dtypes[k], copy=False)) for k, v in inputs.items()}
    names = [o.name for o in session.get_outputs()]
    results = dict(zip(names, session.run(names, feed)))
    for sub, arrays in (("inputs", feed), ("outputs", results)):
        d = case_dir / sub
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for name, arr in arrays.items():
            np.save(d / f"{name}.npy", arr)
    for name, arr in results.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            print(f"  warning: {case_dir.name}/{name} has non-finite values", flush=True)
    return results


def gpt2_feed(session, batch: int, seq: int, past: int = 0, seed: int = 0, head_dim: int | None = None) -> dict:
    """Inputs for a GPT-2-style ONNX graph, built from its declared inputs: input_ids (token_ids
    of a name derived from the shape, below the logits' vocab), attention_mask ones
    [batch, past + seq], position_ids past..past+seq-1, token_type_ids zeros, use_cache_branch
    (merged decoders) true when past > 0, and
    past_key_values.* N(0, 1) float [batch, heads, past, head_dim] (heads, head_dim from the
    graph; head_dim where the graph leaves it symbolic, as onnxruntime's model builder does).
    Dtypes as declared. Exits on any other input."""
    np = require("numpy")
    dtypes = graph_dtypes(session)
    vocab = next((o.shape[-1] for o in session.get_outputs() if o.name == "logits"), None)
    if not isinstance(vocab, int):
        vocab = 1000  # symbolic or no logits: ids below 1000 are valid for every GPT-2 here
    rng = np.random.default_rng(seed)
    feed = {}
    for i in session.get_inputs():
        if i.name == "input_ids":
            v = token_ids(f"b{batch}_s{seq}", batch, seq, vocab)
        elif i.name == "attention_mask":
            v = np.ones((batch, past + seq))
        elif i.name == "position_ids":
            v = np.broadcast_to(np.arange(past, past + seq), (batch, seq))
        elif i.name == "token_type_ids":
            v = np.zeros((batch, seq))
        elif i.name == "use_cache_branch":  # optimum's merged decoders: see cache_flag
            v = np.array([past > 0])
        elif i.name.startswith("past_key_values."):
            heads, size = i.shape[1], i.shape[3] if isinstance(i.shape[3], int) else head_dim
            if not (isinstance(heads, int) and isinstance(size, int)):
                fail(f"{i.name}: heads/head_dim must be static (or pass the head size), got shape {i.shape}")
            v = rng.standard_normal((batch, heads, past, size))
        else:
            fail(f"don't know how to feed graph input {i.name} {i.shape}")
        feed[i.name] = np.ascontiguousarray(np.asarray(v).astype(dtypes[i.name]))
    return feed
