# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Long soak of the live node over real DDS: memory and latency must stay flat; prints the numbers.

    python benchmarks/soak.py                  # 10,000 frames (~15-25 min on 2 CPU cores)
    python benchmarks/soak.py --frames 3000

Runs ``test/test_ros_soak.py`` (the node in-process, random-init tiny model at 64 px on a 2,000-point frame with two
tracked objects, re-prompted every 500 frames, frames published in lock step) with ``SAM4D_SOAK_FRAMES`` set, and
prints its summary line: frames/s, lost frames, median processing time early vs late, RSS after warm-up and its
growth, the tracker's stored memories against their bound. Exits with the test's status (its bounds: RSS growth
< 50 MiB, late median <= 1.5x early + 20 ms, memories within the bound, no errors).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    """Run the soak; returns its exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10_000)
    a = ap.parse_args(argv)
    env = dict(os.environ, SAM4D_SOAK_FRAMES=str(a.frames))
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
           str(ROOT / "test" / "test_ros_soak.py")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("soak:")]
    print("\n".join(lines) if lines else r.stdout[-4000:])
    if r.returncode:
        print(r.stdout[-3000:], r.stderr[-2000:], sep="\n")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
