# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Conversions between the Waymo-4DSeg layout and rosbag2 (both directions), used by the bag CLIs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .io_utils import DataError, check_pose, safe_join
from .rosbag_io import BASE_FRAME, bag_info, read_bag_frames, write_bag
from .waymo4dseg import Sequence, SequenceWriter, timestamp_us

log = logging.getLogger(__name__)


def sequence_object_classes(seq: Sequence) -> Dict[int, str]:
    """Union of ``object_id -> semantic`` over all label files of a sequence (ids > 0)."""
    out: Dict[int, str] = {}
    for i, f in enumerate(seq.frames_info):
        rel = f["path"].get("sam4d_label")
        if not rel:
            continue
        p = safe_join(seq.root, rel, f"{seq.seq_name} frame {i}: sam4d_label")
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: cannot read labels: {e}") from None
        for s in (d.get("sensors") or {}).values():
            for o in (s or {}).get("objects", []):
                k = int(o.get("object_id", 0))
                if k > 0:
                    out[k] = str(o.get("semantic", "unknown"))
    return dict(sorted(out.items()))


def export_layout_to_bag(root: str | Path, seq_name: str, bag_path: str | Path, storage: str = "mcap",
                         overwrite: bool = False, progress: bool = False, with_labels: bool = True,
                         base2lidar: Optional[np.ndarray] = None, **write_kwargs: Any) -> Path:
    """Write sequence ``seq_name`` of a layout as a rosbag2 (see :func:`~sam4d_model.data.rosbag_io.write_bag`).

    ``base2lidar`` defaults to the sequence meta's ``base2lidar`` (synthetic and KITTI imports store it), else
    identity (``base_link`` = ``lidar``).
    """
    seq = Sequence(root, seq_name)
    if base2lidar is None and "base2lidar" in seq.meta:
        base2lidar = check_pose(seq.meta["base2lidar"], f"{seq.meta_path}: base2lidar")
    classes = sequence_object_classes(seq) if with_labels else None

    def frames():
        for i in range(len(seq)):
            f = seq.frame(i)
            lab = seq.labels(i, f.num_points, {c.name: c.image.shape[:2] for c in f.cameras}) if with_labels else None
            yield f, lab

    fields = seq.point_fields or None
    return write_bag(frames(), bag_path, storage=storage, overwrite=overwrite, progress=progress,
                     num_frames=len(seq), base2lidar=base2lidar, object_classes=classes or None,
                     point_fields=fields, write_ground_truth=with_labels, **write_kwargs)


def import_bag_to_layout(bag_path: str | Path, root: str | Path, seq_name: str, image_format: str = "png",
                         overwrite: bool = False, progress: bool = False, with_labels: bool = True,
                         **read_kwargs: Any) -> Path:
    """Turn a rosbag2 into sequence ``seq_name`` of a layout (time-associated camera/LiDAR pairs, TF poses)."""
    info = bag_info(bag_path)
    stats: Dict[str, int] = {}
    frames = read_bag_frames(bag_path, with_labels=with_labels, stats=stats, **read_kwargs)
    lidar_topic = read_kwargs.get("lidar_topic") or "/lidar/points"
    total = info["topics"].get(lidar_topic, {}).get("count")
    it = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, total=total, desc=f"import {Path(bag_path).name}", unit="sweep", dynamic_ncols=True)
    extra: Dict[str, Any] = {"source_bag": str(bag_path)}
    try:
        from .rosbag_io import load_tf

        tf = load_tf(bag_path)
        extra["base2lidar"] = tf.lookup(BASE_FRAME, read_kwargs.get("lidar_frame", "lidar"))
    except Exception:  # no base_link in the bag: nothing to record
        pass
    fields = None
    writer = None
    try:
        for frame, labels, _ in it:
            if writer is None:
                fields = _bag_point_fields(bag_path, lidar_topic, frame.points.shape[1])
                writer = SequenceWriter(root, seq_name, image_format=image_format, overwrite=overwrite,
                                        point_fields=fields, extra_meta=extra)
            if timestamp_us(frame) in writer.frames:
                log.warning("duplicate sweep stamp %d us skipped", timestamp_us(frame))
                continue
            writer.add(frame, labels if with_labels else None)
        if writer is None:
            raise DataError(f"{bag_path}: no usable LiDAR sweeps ({stats})")
        return writer.close()
    finally:
        if stats:
            log.info("bag import stats: %s", stats)


def _bag_point_fields(bag_path, lidar_topic: str, ncols: int):
    from .rosbag_io import _open_reader, get_typestore, pointcloud2_to_points

    r = _open_reader(bag_path)
    try:
        conns = [c for c in r.connections if c.topic == lidar_topic]
        for c, _, raw in r.messages(connections=conns):
            _, names = pointcloud2_to_points(get_typestore().deserialize_cdr(raw, c.msgtype))
            return names if len(names) == ncols else None
    finally:
        r.close()
    return None
