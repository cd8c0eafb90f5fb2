"""Writes golden/emit/<case>/: onnxruntime's outputs for `rbe-convert --emit onnx` of committed
fixtures, for tests/emit_onnx.rs.

Each case converts a fixture with the release `rbe-convert` (the case's flags), emits the
standard ONNX file, runs it in onnxruntime on GPT-2 style inputs, and writes `inputs/*.npy`,
`outputs/*.npy` and `emitted.json` (the emitted file's size and CRC-32, and the op types it
uses): the test emits the same file again, checks it is byte-identical to the one these
references came from, and compares `rbe-run` on the .rbeonnx with them. Run after
`cargo build --release`; deterministic.

    /root/venvs/torch/bin/python tools/emit_refs.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FIXTURES, REPO, gpt2_feed, require  # noqa: E402
from emit_check import ort_session  # noqa: E402

OUT = REPO / "golden" / "emit"
RBE_CONVERT = REPO / "target" / "release" / "rbe-convert"

# name, fixture, rbe-convert flags, (batch, seq, past)
CASES = [
    ("legacy_op17_q4", "gpt2_legacy_op17", ["--preset", "q4"], (2, 16, 0)),
    ("legacy_op17_asym4", "gpt2_legacy_op17", ["--bits", "4"], (1, 9, 0)),
    ("legacy_op14_q3_g16", "gpt2_legacy_op14", ["--preset", "q3", "--group", "16"], (1, 12, 0)),
    ("optimum_past_asym3", "gpt2_optimum_past", ["--bits", "3"], (1, 1, 8)),
    ("dynamo_op18_g48_f32", "gpt2_dynamo_op18", ["--bits", "4", "--group", "48", "--block", "96"], (1, 7, 0)),
]


def main() -> int:
    np = require("numpy")
    onnx = require("onnx")
    for name, fixture, flags, (batch, seq, past) in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            ours, emitted = Path(tmp) / "m.rbeonnx", Path(tmp) / "m.onnx"
            subprocess.run([str(RBE_CONVERT), str(FIXTURES / f"{fixture}.onnx"), "-o", str(ours), *flags],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run([str(RBE_CONVERT), "--emit", "onnx", str(ours), "-o", str(emitted)],
                           check=True, stdout=subprocess.DEVNULL)
            data = emitted.read_bytes()
            session = ort_session(emitted)
            feeds = gpt2_feed(session, batch, seq, past=past, seed=0)
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            ops = sorted({f"{n.domain}:{n.op_type}" for n in onnx.load_from_string(data).graph.node})
        case = OUT / name
        for sub, values in (("inputs", feeds), ("outputs", outputs)):
            (case / sub).mkdir(parents=True, exist_ok=True)
            for k, v in values.items():
                np.save(case / sub / f"{k}.npy", v)
        meta = {"fixture": fixture, "flags": flags, "bytes": len(data), "crc32": zlib.crc32(data), "ops": ops}
        (case / "emitted.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: {len(data)} bytes, ops {' '.join(ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
