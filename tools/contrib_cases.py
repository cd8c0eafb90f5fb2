"""Writes test cases for onnxruntime's contrib ops (domain `com.microsoft`) under tests/contrib/.

The ONNX conformance suite (tools/conformance.py) has no case for the ops onnxruntime's tools
write (MatMulNBits, GroupQueryAttention, SkipLayerNormalization, ...). This script builds small
one-node models for them, runs each through onnxruntime (the reference: those ops are defined by
its implementation), and writes the cases in the layout of tests/conformance/, which
tests/conformance.rs reads:

    tests/contrib/node/<case>/model.onnx
    tests/contrib/node/<case>/test_data_set_0/{input,output}_<i>.pb   (TensorProto)
    tests/contrib/manifest.tsv   (name  rtol  atol  io  ops)

The cases come from the modules `tools/contrib_<family>.py`: each defines `cases()`, returning
a list of `Case` (below). Deterministic: a rerun with the same packages gives identical files.

    /root/venvs/torch/bin/python tools/contrib_cases.py [--out tests/contrib]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from conformance import model_ops, tensor_bytes  # noqa: E402


@dataclass
class Case:
    """One case: a model, the values of its graph inputs (in order), and the tolerances its
    outputs are compared with (`|got - want| <= atol + rtol * |want|`)."""

    name: str
    model: object  # onnx.ModelProto
    inputs: list = field(default_factory=list)  # numpy arrays, one per graph input
    rtol: float = 1e-4
    atol: float = 1e-5
    # False for onnxruntime's ops in the default domain (SimplifiedLayerNormalization), which
    # the ONNX checker does not know.
    check: bool = True


def one_node(op_type: str, inputs: list, feeds: dict, consts: dict, outputs: list, domain: str = "com.microsoft", **attrs):
    """A model of one node. `inputs` names the node's inputs in order ("" for an omitted one);
    each is a graph input (`feeds`: name -> array, in graph-input order) or an initializer
    (`consts`). `outputs` are `(name, numpy dtype, shape)` ("" for an omitted output)."""
    import numpy as np
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype
    node = helper.make_node(op_type, inputs, [o[0] for o in outputs], domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        op_type,
        [helper.make_tensor_value_info(n, elem(v.dtype), v.shape) for n, v in feeds.items()],
        [helper.make_tensor_value_info(n, elem(np.dtype(t)), s) for n, t, s in outputs if n],
        initializer=[numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def families() -> list:
    """The case modules `tools/contrib_<family>.py`, sorted by name."""
    names = sorted(p.stem for p in TOOLS.glob("contrib_*.py") if p.stem != "contrib_cases")
    return [importlib.import_module(n) for n in names]


def reference_outputs(case: Case) -> list:
    """The case's outputs as onnxruntime computes them (one thread, no graph optimization)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(case.model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: v for i, v in zip(session.get_inputs(), case.inputs)}
    return session.run(None, feeds)


def write_case(case: Case, node_dir: Path) -> str:
    """Writes the case's files and returns its manifest line."""
    import onnx

    if case.check:
        onnx.checker.check_model(case.model)
    graph = case.model.graph
    outputs = reference_outputs(case)
    files = {"model.onnx": case.model.SerializeToString()}
    for i, (info, value) in enumerate(zip(graph.input, case.inputs)):
        files[f"test_data_set_0/input_{i}.pb"] = tensor_bytes(info.name, value)
    for i, (info, value) in enumerate(zip(graph.output, outputs)):
        files[f"test_data_set_0/output_{i}.pb"] = tensor_bytes(info.name, value)
    for rel, data in files.items():
        path = node_dir / case.name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    ops = ",".join(model_ops(case.model))
    return f"{case.name}\t{case.rtol:g}\t{case.atol:g}\ttensor\t{ops}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "contrib")
    args = parser.parse_args()

    import onnxruntime as ort

    node_dir = args.out / "node"
    if node_dir.exists():
        shutil.rmtree(node_dir)
    manifest = [f"# onnxruntime {ort.__version__}; name\trtol\tatol\tio\tops (domain:op_type@opset)"]
    seen: set[str] = set()
    for module in families():
        for case in module.cases():
            if case.name in seen:
                raise SystemExit(f"error: two cases named {case.name}")
            seen.add(case.name)
            manifest.append(write_case(case, node_dir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifest.tsv").write_text("\n".join(manifest) + "\n")
    print(f"onnxruntime {ort.__version__}: {len(manifest) - 1} cases -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
