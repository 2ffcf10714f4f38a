# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-export-bag`` (Waymo-4DSeg layout -> rosbag2) and ``sam4d-import-bag`` (rosbag2 -> layout)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..data import rosbag_io as rb


def _add_topic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lidar-topic", default=rb.LIDAR_TOPIC)
    p.add_argument("--gt-points-topic", default=rb.GT_POINTS_TOPIC)
    p.add_argument("--gt-objects-topic", default=rb.GT_OBJECTS_TOPIC)
    p.add_argument("--tf-topic", default=rb.TF_TOPIC)
    p.add_argument("--tf-static-topic", default=rb.TF_STATIC_TOPIC)
    p.add_argument("--camera", action="append", default=[], metavar="NAME=IMAGE_TOPIC[,INFO_TOPIC[,GT_TOPIC]]",
                   help="camera name and topics (repeatable); default: /camera/image_raw + /camera/camera_info "
                        "for one camera, /camera/<name>/... for several")


def _camera_topics(specs: List[str], frame_prefix: str = "camera") -> Optional[Dict[str, rb.CameraTopics]]:
    if not specs:
        return None
    out = {}
    for s in specs:
        if "=" not in s:
            raise SystemExit(f"error: --camera expects NAME=IMAGE_TOPIC[,INFO_TOPIC[,GT_TOPIC]], got {s!r}")
        name, rest = s.split("=", 1)
        parts = rest.split(",")
        img = parts[0]
        info = parts[1] if len(parts) > 1 and parts[1] else img.rsplit("/", 1)[0] + "/camera_info"
        gt = parts[2] if len(parts) > 2 else ""
        fid = rb.CAMERA_FRAME if len(specs) == 1 else f"{frame_prefix}_{name.lower()}_optical"
        out[name] = rb.CameraTopics(img, info, fid, gt)
    return out


def build_export_parser() -> argparse.ArgumentParser:
    """Argument parser of ``sam4d-export-bag``."""
    p = argparse.ArgumentParser(prog="sam4d-export-bag",
                                description="Write a Waymo-4DSeg sequence as a rosbag2 (PointCloud2, Image, "
                                            "CameraInfo, /tf at 100 Hz, /tf_static, ground truth topics).")
    p.add_argument("root", type=Path, help="layout root (holds meta_infos/)")
    p.add_argument("seq", help="sequence name (meta_infos/<seq>.pkl)")
    p.add_argument("bag", type=Path, help="output bag folder (must not exist unless --overwrite)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--no-ground-truth", action="store_true", help="do not write the /ground_truth/* topics")
    p.add_argument("--tf-rate", type=float, default=100.0, help="odom -> base_link rate in Hz")
    p.add_argument("--camera-offset-ms", type=float, default=8.0)
    p.add_argument("--camera-jitter-ms", type=float, default=0.0)
    p.add_argument("--drop-prob", type=float, default=0.0, help="drop camera frames at random")
    p.add_argument("--seed", type=int, default=0, help="seed of jitter / drops")
    p.add_argument("--odom-frame", default=rb.ODOM_FRAME)
    p.add_argument("--base-frame", default=rb.BASE_FRAME)
    p.add_argument("--lidar-frame", default=rb.LIDAR_FRAME)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    _add_topic_args(p)
    return p


def export_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``sam4d-export-bag``."""
    a = build_export_parser().parse_args(argv)
    from ..data.convert import export_layout_to_bag
    from ..data.io_utils import DataError

    try:
        out = export_layout_to_bag(
            a.root, a.seq, a.bag, storage=a.storage, overwrite=a.overwrite, progress=not a.no_progress,
            with_labels=not a.no_ground_truth, lidar_topic=a.lidar_topic, camera_topics=_camera_topics(a.camera),
            tf_topic=a.tf_topic, tf_static_topic=a.tf_static_topic, gt_points_topic=a.gt_points_topic,
            gt_objects_topic=a.gt_objects_topic, odom_frame=a.odom_frame, base_frame=a.base_frame,
            lidar_frame=a.lidar_frame, tf_rate_hz=a.tf_rate, camera_offset_ms=a.camera_offset_ms,
            camera_jitter_ms=a.camera_jitter_ms, camera_drop_prob=a.drop_prob, seed=a.seed)
    except (DataError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def build_import_parser() -> argparse.ArgumentParser:
    """Argument parser of ``sam4d-import-bag``."""
    p = argparse.ArgumentParser(prog="sam4d-import-bag",
                                description="Turn a rosbag2 (any recorder: PointCloud2 + Image/CompressedImage + "
                                            "CameraInfo + TF) into a Waymo-4DSeg sequence, pairing each sweep with "
                                            "the nearest image in time and taking poses from TF.")
    p.add_argument("bag", type=Path, help="bag folder or .mcap/.db3 file")
    p.add_argument("root", type=Path, help="layout root to write into")
    p.add_argument("--seq", help="sequence name (default: the bag's name)")
    p.add_argument("--image-format", choices=["jpg", "png", "both"], default="png")
    p.add_argument("--max-dt", type=float, default=0.05, help="max |camera - LiDAR| stamp difference, seconds")
    p.add_argument("--world-frame", default=None, help="fixed frame for lidar2world (default: odom)")
    p.add_argument("--no-pose", action="store_true", help="keep sweeps without a TF pose (identity lidar2world)")
    p.add_argument("--allow-missing-camera", action="store_true", help="keep sweeps without a matching image")
    p.add_argument("--motion-compensate-camera", action="store_true",
                   help="camera2lidar through the world frame at the camera's own stamp")
    p.add_argument("--tf-tolerance-ms", type=float, default=0.0, help="allow TF lookups this far past the data")
    p.add_argument("--no-labels", action="store_true", help="ignore /ground_truth/* topics")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--info", action="store_true", help="only print the bag's topics and exit")
    _add_topic_args(p)
    return p


def import_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``sam4d-import-bag``."""
    a = build_import_parser().parse_args(argv)
    from ..data.convert import import_bag_to_layout
    from ..data.io_utils import DataError

    try:
        if a.info:
            print(json.dumps(rb.bag_info(a.bag), indent=1, default=str))
            return 0
        seq = a.seq or a.bag.stem
        out = import_bag_to_layout(
            a.bag, a.root, seq, image_format=a.image_format, overwrite=a.overwrite, progress=not a.no_progress,
            with_labels=not a.no_labels, lidar_topic=a.lidar_topic, camera_topics=_camera_topics(a.camera),
            gt_points_topic=a.gt_points_topic, gt_objects_topic=a.gt_objects_topic, tf_topic=a.tf_topic,
            tf_static_topic=a.tf_static_topic, world_frame=a.world_frame, max_dt=a.max_dt,
            require_cameras=not a.allow_missing_camera, require_pose=not a.no_pose,
            motion_compensate_camera=a.motion_compensate_camera, tf_tolerance_ns=int(a.tf_tolerance_ms * 1e6))
    except (DataError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(export_main())
