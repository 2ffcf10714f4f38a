# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Fuzz the input decoders: PointCloud2, Image, CompressedImage, CameraInfo (+ rectification), prompts, label JSON and
layout point files, with hypothesis (``sam4d_ros.fuzzing``); prints cases and failures per target.

    python benchmarks/fuzz_inputs.py                 # 100,000 cases in all (~5 min on 2 cores)
    python benchmarks/fuzz_inputs.py --cases 5000 --seed 1

A failure is any exception other than the decoder's documented error with a message; the first one of a target is
shrunk by hypothesis and printed, and the script exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    """Run the fuzzing; returns 0 when no target failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000, help="cases in all, split evenly over the targets")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from hypothesis import HealthCheck, given, seed, settings

    from sam4d_ros import fuzzing

    per = max(1, a.cases // len(fuzzing.TARGETS))
    total, failed = 0, 0
    print(f"{'target':<18}{'cases':>9}{'failures':>10}{'seconds':>9}")
    def runner(name, t, count):
        @seed(a.seed)
        @settings(max_examples=per, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(t.strategy)
        def run(value):
            count[0] += 1
            fuzzing.check(name, value)
        return run

    for name, t in fuzzing.TARGETS.items():
        count = [0]
        run = runner(name, t, count)

        t0 = time.perf_counter()
        err = None
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - report, then go on with the other targets
            err = exc
        dt = time.perf_counter() - t0
        total += count[0]
        failed += err is not None
        print(f"{name:<18}{count[0]:>9}{int(err is not None):>10}{dt:>9.1f}")
        if err is not None:
            print(f"  {type(err).__name__}: {str(err)[:2000]}")
    print(f"total {total} cases, {failed} failing target(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
