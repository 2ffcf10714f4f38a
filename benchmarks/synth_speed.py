# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark the synthetic drive generator: render speed, layout/bag write speed and sizes.

Usage: ``python benchmarks/synth_speed.py --frames 100 [--out DIR] [--bag]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--beams", type=int, default=64)
    ap.add_argument("--azimuths", type=int, default=1024)
    ap.add_argument("--image-format", default="jpg")
    ap.add_argument("--bag", action="store_true", help="also write and time the rosbag2")
    ap.add_argument("--render-only", action="store_true", help="only time rendering (nothing written)")
    ap.add_argument("--out", type=Path, default=None, help="keep outputs here (default: temporary, deleted)")
    a = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from sam4d_model.data.convert import export_layout_to_bag
    from sam4d_model.data.synth import SynthConfig, SynthDrive, write_layout

    cfg = SynthConfig(width=a.width, height=a.height, beams=a.beams, azimuths=a.azimuths)
    out = a.out or Path(tempfile.mkdtemp(prefix="synth_bench_"))
    res = {"frames": a.frames, "config": f"{a.width}x{a.height}, {a.beams}x{a.azimuths}"}
    t0 = time.perf_counter()
    drive = SynthDrive(a.seed, a.frames, cfg)
    res["scene_build_s"] = round(time.perf_counter() - t0, 3)
    if a.render_only:
        t0 = time.perf_counter()
        npts = 0
        for i in range(a.frames):
            npts += drive.render(i).frame.num_points
        dt = time.perf_counter() - t0
        res.update(render_s=round(dt, 2), render_s_per_frame=round(dt / a.frames, 3), points_per_frame=npts // a.frames)
    else:
        t0 = time.perf_counter()
        write_layout(drive, out, "bench", image_format=a.image_format, overwrite=True, progress=True)
        dt = time.perf_counter() - t0
        res.update(layout_s=round(dt, 2), layout_s_per_frame=round(dt / a.frames, 3),
                   layout_mb=round(sum(_du(out / d) for d in ("meta_infos", "pcds", "undistort_images",
                                                                "sam4d_labels")) / 1e6, 1))
        if a.bag:
            t0 = time.perf_counter()
            export_layout_to_bag(out, "bench", out / "bench_bag", overwrite=True, progress=True)
            res.update(bag_s=round(time.perf_counter() - t0, 2), bag_mb=round(_du(out / "bench_bag") / 1e6, 1))
    print(json.dumps(res, indent=1))
    if a.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
