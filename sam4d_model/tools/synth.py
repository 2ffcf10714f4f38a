# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-synth``: generate synthetic drives with exact ground truth (Waymo-4DSeg layout + rosbag2)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``sam4d-synth``."""
    p = argparse.ArgumentParser(
        prog="sam4d-synth",
        description="Render procedural driving scenes (camera + spinning LiDAR) with exact instance ground truth "
                    "into the Waymo-4DSeg layout and, optionally, a rosbag2 of the same drive. Deterministic per "
                    "seed; interrupted runs resume (complete frames are kept).")
    p.add_argument("--out", required=True, type=Path, help="layout root folder (created if missing)")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one drive per seed (default: 0)")
    p.add_argument("--frames", type=int, default=100, help="frames per drive at 10 Hz (default: 100)")
    p.add_argument("--seq-prefix", default="synth_", help="sequence name = prefix + 6-digit seed")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--hfov", type=float, default=80.0, help="camera horizontal field of view, degrees")
    p.add_argument("--beams", type=int, default=64, help="LiDAR beams (default 64, -25..+3 deg)")
    p.add_argument("--azimuths", type=int, default=1024, help="LiDAR azimuth steps per sweep")
    p.add_argument("--image-format", choices=["jpg", "png", "both"], default="jpg",
                   help="jpg like the released data; png/both for lossless round trips")
    p.add_argument("--depth", action="store_true", help="also write camera depth maps (depth/<seq>/<ts>/<cam>.npz)")
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 of each drive to <out>/bags/<seq>")
    p.add_argument("--bag-storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--camera-offset-ms", type=float, default=8.0, help="camera stamp after the sweep stamp")
    p.add_argument("--camera-jitter-ms", type=float, default=0.0, help="uniform +- jitter of camera stamps")
    p.add_argument("--tf-jitter-ms", type=float, default=0.2, help="uniform +- jitter of the 100 Hz /tf stamps")
    p.add_argument("--drop-prob", type=float, default=0.0, help="probability of dropping a camera frame in the bag")
    p.add_argument("--overwrite", action="store_true", help="regenerate from scratch instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    from ..data.io_utils import DataError
    from ..data.synth import SynthConfig, SynthDrive, write_bag, write_layout

    if args.frames < 1:
        print("error: --frames must be >= 1", file=sys.stderr)
        return 2
    cfg = SynthConfig(width=args.width, height=args.height, hfov_deg=args.hfov, beams=args.beams,
                      azimuths=args.azimuths)
    try:
        for seed in args.seed:
            seq = f"{args.seq_prefix}{seed:06d}"
            t0 = time.time()
            drive = SynthDrive(seed, args.frames, cfg)
            meta = write_layout(drive, args.out, seq, image_format=args.image_format, resume=not args.overwrite,
                                overwrite=args.overwrite, progress=not args.no_progress, write_depth=args.depth)
            msg = f"{seq}: layout {meta} ({time.time() - t0:.1f} s)"
            if args.bag:
                bag = args.out / "bags" / seq
                if bag.exists() and not args.overwrite:
                    msg += f"; bag {bag} exists (kept)"
                else:
                    write_bag(drive, bag, storage=args.bag_storage, overwrite=True, progress=not args.no_progress,
                              camera_offset_ms=args.camera_offset_ms, camera_jitter_ms=args.camera_jitter_ms,
                              tf_jitter_ms=args.tf_jitter_ms, camera_drop_prob=args.drop_prob, seed=seed)
                    msg += f"; bag {bag}"
            print(msg)
    except (DataError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
