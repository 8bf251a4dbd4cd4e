"""Change-map adherence of an edited picture, from the command line (no ComfyUI needed).

    python benchmarks/adherence.py ORIGINAL.png RESULT.png MAP.png [--json] [--smooth N]
                                   [--calibration "0:0, 0.5:0.04, 1:0.12"] [--invert]

The same report as the *Change Map Adherence* node (``nodes/core/metrics.py`` has the definitions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the pack root, for nodes.core
from nodes.core import metrics  # noqa: E402
from nodes.core.errors import InputError  # noqa: E402


def load_png(path: str, mode: str) -> torch.Tensor:
    """A picture file as a ``(1,H,W,3)`` IMAGE (mode ``RGB``) or a ``(1,H,W)`` MASK (mode ``L``), 0..1."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).unsqueeze(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/adherence.py",
                                     description="Change-map adherence of an edited picture.")
    parser.add_argument("original")
    parser.add_argument("result")
    parser.add_argument("change_map", help="grey PNG, white = change")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--smooth", type=int, default=0, help="smoothing radius of the realized change (map px)")
    parser.add_argument("--calibration", default="", help="uniform-map sweep pairs, e.g. '0:0, 0.5:0.04, 1:0.12'")
    parser.add_argument("--invert", action="store_true", help="the map is white = keep")
    args = parser.parse_args(argv)
    try:
        res = metrics.adherence(load_png(args.original, "RGB"), load_png(args.result, "RGB"),
                                load_png(args.change_map, "L"), args.calibration, args.smooth, args.invert)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics.as_json(res), indent=2) if args.json else metrics.report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
