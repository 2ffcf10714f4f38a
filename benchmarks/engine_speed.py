# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Data engine benchmark: frames per hour of stages 2-5 on CPU, and LiDAR IoU with clean / corrupted 2D masks.

Renders a synthetic drive (default: 100 frames, 640x480 camera, 64x1024 LiDAR) into a Waymo-4DSeg layout in a
temporary folder, then runs the engine from disk with ground-truth masks (clean, then corrupted: 3 px boundary
noise, 10 % missed frames, 5 % identity switches) and the single-frame baseline, and writes the labels.

    python benchmarks/engine_speed.py [--frames 100] [--seed 1] [--scale full|small] [--keep DIR] [--set KEY=VALUE]

Stage 1 (masklets) is not timed: here it is ground truth; for SAM2 it is the video model's own speed.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from sam4d_model.data.waymo4dseg import read_sequence  # noqa: E402
from sam4d_model.engine import CorruptionConfig, EngineConfig, GroundTruthSource, label_sequence  # noqa: E402
from sam4d_model.engine.testing import drive_config, write_synthetic_layout  # noqa: E402
from sam4d_model.engine.writer import write_result  # noqa: E402
from sam4d_model.tools.label import parse_set  # noqa: E402

STAGES = ("reconstruct", "associate", "fuse", "transfer", "write")


def run(seq, root, out, source, name, cfg):
    res = label_sequence(seq, source, cfg, progress=True, baseline=True, evaluate=True)
    write_result(res, out / name, {"benchmark": name}, seq_root=root, overwrite=True)
    n = len(res.frames)
    stages = sum(res.timings[k] for k in STAGES)
    with_load = stages + res.timings["load"]
    m = res.metrics
    row = {
        "input": name, "frames": n,
        "iou_ours_covered": round(m["ours"]["covered"]["mean_iou"], 3),
        "iou_baseline_covered": round(m["baseline"]["covered"]["mean_iou"], 3),
        "iou_ours_fov": round(m["ours"]["fov"]["mean_iou"], 3),
        "iou_baseline_fov": round(m["baseline"]["fov"]["mean_iou"], 3),
        "objects_evaluated": m["ours"]["covered"]["num_objects"],
        "stages_2_5_s": round(stages, 2), "frames_per_hour_stages_2_5": round(3600 * n / stages),
        "frames_per_hour_with_loading": round(3600 * n / with_load),
        "timings_s": {k: round(v, 2) for k, v in res.timings.items()},
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", choices=["full", "small"], default="full")
    ap.add_argument("--keep", help="keep the rendered drive and outputs in this folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an EngineConfig field (repeatable), e.g. --set dyn_grow_dist=0.35")
    args = ap.parse_args()
    cfg = EngineConfig.from_dict(parse_set(args.set))  # the same --set as sam4d-label
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sam4d_engine_bench_"))
    try:
        root, out = work / "data", work / "out"
        t0 = time.perf_counter()
        names = list(read_sequence_names(root)) or write_synthetic_layout(root, [args.seed], args.frames,
                                                                          drive_config(args.scale))
        print(f"drive {names[0]}: {args.frames} frames rendered in {time.perf_counter() - t0:.1f} s", flush=True)
        seq = read_sequence(root, names[0])
        rows = [run(seq, root, out, GroundTruthSource(), "gt_masks", cfg),
                run(seq, root, out, GroundTruthSource(CorruptionConfig(boundary_px=3, miss_rate=0.1,
                                                                       switch_rate=0.05, seed=0)), "corrupted", cfg)]
        print("\ninput       IoU ours (covered / fov)   IoU single-frame baseline (covered / fov)   frames/hour 2-5")
        for r in rows:
            print(f"{r['input']:<11} {r['iou_ours_covered']:.3f} / {r['iou_ours_fov']:.3f}"
                  f"              {r['iou_baseline_covered']:.3f} / {r['iou_baseline_fov']:.3f}"
                  f"                          {r['frames_per_hour_stages_2_5']}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def read_sequence_names(root):
    from sam4d_model.data.waymo4dseg import list_sequences

    return list_sequences(root) if Path(root).is_dir() else []


if __name__ == "__main__":
    main()
