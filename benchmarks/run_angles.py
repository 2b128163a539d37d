#!/usr/bin/env python
"""Thin runner: the gradient-angle throughput suite, results saved under benchmarks/results/.

python benchmarks/run_angles.py          # full sizes  -> results/angles.json
python benchmarks/run_angles.py --quick  # < 1 minute  -> results/angles_quick.json
"""

import sys
from pathlib import Path

from geotrip.cli import main

if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    out = (
        Path(__file__).resolve().parent
        / "results"
        / ("angles_quick.json" if quick else "angles.json")
    )
    sys.exit(
        main(["bench", "--suite", "angles", "--json", str(out)] + (["--quick"] if quick else []))
    )
