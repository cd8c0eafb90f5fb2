"""Writes the ONNX node conformance cases under tests/conformance/ for tests/conformance.rs.

The cases come from the `onnx` package's own definitions
(`onnx.backend.test.case.node.collect_testcases()`): each has a one-node model (or a small
graph, for function-expanded cases), input/output data sets and its rtol/atol. They are written
the way onnx writes its `backend/test/data/node/` folders:

    tests/conformance/node/<case>/model.onnx
    tests/conformance/node/<case>/test_data_set_<k>/{input,output}_<i>.pb   (TensorProto)

plus `tests/conformance/manifest.tsv`, one line per case:
`name  rtol  atol  io  ops` where `io` is `tensor` (data written) or the kind of a non-tensor
value (`sequence`, `optional`, `map`; only the model is written: the Rust test checks that such
a case ends in a clear error) and `ops` lists `domain:op_type@opset` of every node, subgraphs
included. Cases whose data would exceed `--max-case-bytes` are left out and listed in
`tests/conformance/skipped.tsv` with their size.

Deterministic: a rerun with the same onnx version gives byte-identical files.

    /root/venvs/torch/bin/python tools/conformance.py [--out tests/conformance] [--max-case-bytes 32768]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def value_kind(value) -> str:
    """`tensor` for numpy arrays, else the kind of non-tensor value onnx would write."""
    import numpy as np
    from onnx import TensorProto

    if isinstance(value, (np.ndarray, np.generic, TensorProto)):
        return "tensor"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return "optional"


def graph_ops(graph, opsets: dict[str, int], out: set[str]) -> None:
    """Collects `domain:op_type@opset` of every node of `graph`, subgraphs included."""
    from onnx import AttributeProto

    for node in graph.node:
        domain = node.domain or ""
        out.add(f"{domain}:{node.op_type}@{opsets.get(domain, 0)}")
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                graph_ops(attr.g, opsets, out)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    graph_ops(g, opsets, out)


def model_ops(model) -> list[str]:
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    ops: set[str] = set()
    graph_ops(model.graph, opsets, ops)
    return sorted(ops)


def tensor_bytes(name: str, value) -> bytes:
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        proto = TensorProto()
        proto.CopyFrom(value)
        proto.name = name
        return proto.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def case_files(case) -> tuple[str, dict[str, bytes]]:
    """The case's io kind and its files (relative path -> bytes)."""
    files = {"model.onnx": case.model.SerializeToString()}
    kinds = {value_kind(v) for inputs, outputs in case.data_sets for v in (*inputs, *outputs)}
    non_tensor = sorted(kinds - {"tensor"})
    if non_tensor:
        return non_tensor[0], files
    graph = case.model.graph
    initialized = {t.name for t in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in initialized]
    output_names = [o.name for o in graph.output]
    for k, (inputs, outputs) in enumerate(case.data_sets):
        for i, value in enumerate(inputs):
            name = input_names[i] if i < len(input_names) else ""
            files[f"test_data_set_{k}/input_{i}.pb"] = tensor_bytes(name, value)
        for i, value in enumerate(outputs):
            name = output_names[i] if i < len(output_names) else ""
            files[f"test_data_set_{k}/output_{i}.pb"] = tensor_bytes(name, value)
    return "tensor", files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "conformance")
    parser.add_argument("--max-case-bytes", type=int, default=32 * 1024)
    args = parser.parse_args()

    import onnx
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = sorted(node.collect_testcases(), key=lambda c: c.name)

    node_dir = args.out / "node"
    if node_dir.exists():
        shutil.rmtree(node_dir)
    manifest = ["# name\trtol\tatol\tio\tops (domain:op_type@opset)"]
    skipped = ["# name\tbytes (over --max-case-bytes, not committed)"]
    total = 0
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            continue
        seen.add(case.name)
        io, files = case_files(case)
        size = sum(len(b) for b in files.values())
        if size > args.max_case_bytes:
            skipped.append(f"{case.name}\t{size}")
            continue
        for rel, data in files.items():
            path = node_dir / case.name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        total += size
        ops = ",".join(model_ops(case.model))
        manifest.append(f"{case.name}\t{case.rtol:g}\t{case.atol:g}\t{io}\t{ops}")

    (args.out / "manifest.tsv").write_text("\n".join(manifest) + "\n")
    (args.out / "skipped.tsv").write_text("\n".join(skipped) + "\n")
    print(
        f"onnx {onnx.__version__}: {len(manifest) - 1} cases written ({total} bytes), "
        f"{len(skipped) - 1} skipped (over {args.max_case_bytes} bytes) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
