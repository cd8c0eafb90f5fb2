"""Print the inputs, outputs (dtype, symbolic shape), opsets and sorted op types of ONNX files.

    /root/venvs/torch/bin/python tools/describe_onnx.py tests/fixtures/*.onnx

Only needs onnx. External data is not loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2:
        c.fail("usage: describe_onnx.py FILE.onnx...")
    for arg in sys.argv[1:]:
        path = Path(arg)
        if not path.exists():
            c.fail(f"{arg} not found")
        print(c.describe(path))


if __name__ == "__main__":
    main()
