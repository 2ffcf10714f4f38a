# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-import-kitti``: KITTI raw drives to the Waymo-4DSeg layout and/or a rosbag2 with the project's topics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``sam4d-import-kitti``."""
    p = argparse.ArgumentParser(prog="sam4d-import-kitti",
                                description="Convert a KITTI raw drive (calib_*.txt, image_02, velodyne_points, "
                                            "oxts) to the Waymo-4DSeg layout and/or a rosbag2.")
    p.add_argument("kitti_dir", type=Path, help="the *_sync drive folder or its parent with the calibration files")
    p.add_argument("--out", type=Path, help="layout root to write the sequence into")
    p.add_argument("--bag", type=Path, help="rosbag2 folder to write")
    p.add_argument("--seq", help="sequence name (default: the drive folder's name)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--image-format", choices=["jpg", "png", "both"], default="png")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point."""
    a = build_parser().parse_args(argv)
    if a.out is None and a.bag is None:
        print("error: give --out (layout) and/or --bag", file=sys.stderr)
        return 2
    from ..data.io_utils import DataError
    from ..data.kitti import import_kitti

    try:
        out = import_kitti(a.kitti_dir, out_root=a.out, bag_path=a.bag, seq_name=a.seq, max_frames=a.max_frames,
                           image_format=a.image_format, storage=a.storage, overwrite=a.overwrite,
                           progress=not a.no_progress)
    except (DataError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
