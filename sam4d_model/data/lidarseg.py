# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Point-wise label exports in the SemanticKITTI and nuScenes-lidarseg layouts (writers and readers).

* **SemanticKITTI** (``sequences/<seq>/velodyne/<i:06d>.bin`` float32 ``x y z intensity`` per point and
  ``sequences/<seq>/labels/<i:06d>.label`` uint32 per point: semantic class in the low 16 bits, instance id in the
  high 16 bits), class ids of ``semantic-kitti.yaml`` (:data:`SEMANTICKITTI_CLASSES`).
* **nuScenes-lidarseg** (``lidarseg/<name>_lidarseg.bin``: uint8 class index per point, in the order of the cloud
  ``samples/LIDAR_TOP/<name>.pcd.bin``, float32 ``x y z intensity ring``), class indices of the lidarseg v1.0
  release (:data:`NUSCENES_LIDARSEG_CLASSES`). Without nuScenes sample tokens the files are named by the frame.

Class names: a name of either table, or a common short name (:data:`CLASS_ALIASES`: ``car``, ``truck``,
``pedestrian``...), or an explicit id. Unlabelled points are SemanticKITTI ``unlabeled`` (0) and nuScenes ``noise``
(0, the lidarseg index for points to ignore).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

SEMANTICKITTI_CLASSES: Dict[str, int] = {
    "unlabeled": 0, "outlier": 1, "car": 10, "bicycle": 11, "bus": 13, "motorcycle": 15, "on-rails": 16,
    "truck": 18, "other-vehicle": 20, "person": 30, "bicyclist": 31, "motorcyclist": 32, "road": 40,
    "parking": 44, "sidewalk": 48, "other-ground": 49, "building": 50, "fence": 51, "other-structure": 52,
    "lane-marking": 60, "vegetation": 70, "trunk": 71, "terrain": 72, "pole": 80, "traffic-sign": 81,
    "other-object": 99}

NUSCENES_LIDARSEG_CLASSES: Tuple[str, ...] = (
    "noise", "animal", "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility", "human.pedestrian.police_officer", "human.pedestrian.stroller",
    "human.pedestrian.wheelchair", "movable_object.barrier", "movable_object.debris",
    "movable_object.pushable_pullable", "movable_object.trafficcone", "static_object.bicycle_rack", "vehicle.bicycle",
    "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction", "vehicle.emergency.ambulance",
    "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer", "vehicle.truck", "flat.driveable_surface",
    "flat.other", "flat.sidewalk", "flat.terrain", "static.manmade", "static.other", "static.vegetation",
    "vehicle.ego")

#: short name -> (SemanticKITTI class name, nuScenes-lidarseg class name)
CLASS_ALIASES: Dict[str, Tuple[str, str]] = {
    "car": ("car", "vehicle.car"), "truck": ("truck", "vehicle.truck"), "bus": ("bus", "vehicle.bus.rigid"),
    "bicycle": ("bicycle", "vehicle.bicycle"), "motorcycle": ("motorcycle", "vehicle.motorcycle"),
    "trailer": ("other-vehicle", "vehicle.trailer"), "construction_vehicle": ("other-vehicle", "vehicle.construction"),
    "pedestrian": ("person", "human.pedestrian.adult"), "person": ("person", "human.pedestrian.adult"),
    "barrier": ("other-object", "movable_object.barrier"),
    "traffic_cone": ("other-object", "movable_object.trafficcone"),
    "pole": ("pole", "static.manmade"), "building": ("building", "static.manmade"),
    "vegetation": ("vegetation", "static.vegetation"), "road": ("road", "flat.driveable_surface"),
    "sidewalk": ("sidewalk", "flat.sidewalk"), "terrain": ("terrain", "flat.terrain"),
    "fence": ("fence", "static.manmade"),
}


def semantic_ids(name: Union[str, int, None]) -> Tuple[int, int]:
    """``(SemanticKITTI id, nuScenes-lidarseg index)`` of a class name (or alias); ``None`` -> unlabelled (0, 0).

    A name that only one table knows maps to the other's "other" class (``other-object`` / ``static.other``).
    Raises ``ValueError`` for an unknown name.
    """
    if name is None or name == "":
        return 0, 0
    key = str(name).strip()
    if key in CLASS_ALIASES:
        sk, ns = CLASS_ALIASES[key]
        return SEMANTICKITTI_CLASSES[sk], NUSCENES_LIDARSEG_CLASSES.index(ns)
    if key in SEMANTICKITTI_CLASSES:
        return SEMANTICKITTI_CLASSES[key], NUSCENES_LIDARSEG_CLASSES.index("static.other")
    if key in NUSCENES_LIDARSEG_CLASSES:
        return SEMANTICKITTI_CLASSES["other-object"], NUSCENES_LIDARSEG_CLASSES.index(key)
    raise ValueError(f"unknown class {name!r}: use a SemanticKITTI or nuScenes-lidarseg class name or one of "
                     f"{sorted(CLASS_ALIASES)}")


def pack_semantickitti(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """uint32 labels: semantic in the low 16 bits, instance in the high 16 bits."""
    sem = np.asarray(semantic, np.int64)
    inst = np.asarray(instance, np.int64)
    if sem.min(initial=0) < 0 or sem.max(initial=0) > 0xFFFF or inst.min(initial=0) < 0 or inst.max(initial=0) > 0xFFFF:
        raise ValueError("SemanticKITTI labels: semantic and instance ids must be in 0..65535")
    return (sem | (inst << 16)).astype(np.uint32)


def unpack_semantickitti(labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(semantic, instance)`` of uint32 SemanticKITTI labels."""
    lab = np.asarray(labels, np.uint32)
    return (lab & 0xFFFF).astype(np.uint16), (lab >> 16).astype(np.uint16)


def _columns(points: np.ndarray, n: int) -> np.ndarray:
    """``(N, n)`` float32: the first columns of ``points`` (at least xyz), zero where it has fewer."""
    pts = np.asarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be (N, >=3), got {pts.shape}")
    out = np.zeros((len(pts), n), np.float32)
    k = min(4, n, pts.shape[1])
    out[:, :k] = pts[:, :k]
    return out


def _read_scan(cloud_file: Union[str, Path], columns: int, label_file: Union[str, Path], label_dtype
               ) -> Tuple[np.ndarray, np.ndarray]:
    """``(points (N, columns), labels (N,))`` of a float32 cloud file and its per-point label file."""
    pts = np.fromfile(cloud_file, dtype=np.float32)
    if pts.size % columns:
        raise ValueError(f"{cloud_file}: size is not a multiple of {columns} float32")
    pts = pts.reshape(-1, columns)
    lab = np.fromfile(label_file, dtype=label_dtype)
    if lab.size != len(pts):
        raise ValueError(f"{label_file}: {lab.size} labels for {len(pts)} points")
    return pts, lab


def write_semantickitti(root: Union[str, Path], seq: str, index: int, points: np.ndarray, semantic: np.ndarray,
                        instance: np.ndarray) -> Tuple[Path, Path]:
    """Write one scan: ``velodyne/<index>.bin`` (x y z intensity, float32) and ``labels/<index>.label``."""
    xyzi = _columns(points, 4)
    if len(semantic) != len(xyzi) or len(instance) != len(xyzi):
        raise ValueError("one semantic and one instance id per point")
    base = Path(root) / "sequences" / str(seq)
    (base / "velodyne").mkdir(parents=True, exist_ok=True)
    (base / "labels").mkdir(parents=True, exist_ok=True)
    vel, lab = base / "velodyne" / f"{index:06d}.bin", base / "labels" / f"{index:06d}.label"
    xyzi.tofile(vel)
    pack_semantickitti(semantic, instance).tofile(lab)
    return vel, lab


def read_semantickitti(velodyne_bin: Union[str, Path], label_file: Union[str, Path]
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points (N, 4), semantic, instance)`` of one SemanticKITTI scan, checking that the two files agree."""
    pts, lab = _read_scan(velodyne_bin, 4, label_file, np.uint32)
    sem, inst = unpack_semantickitti(lab)
    return pts, sem, inst


def write_nuscenes_lidarseg(root: Union[str, Path], name: str, points: np.ndarray, classes: np.ndarray,
                            ring: Optional[np.ndarray] = None) -> Tuple[Path, Path]:
    """Write ``samples/LIDAR_TOP/<name>.pcd.bin`` (x y z intensity ring) and ``lidarseg/<name>_lidarseg.bin``."""
    cloud = _columns(points, 5)
    cls = np.asarray(classes)
    if len(cls) != len(cloud):
        raise ValueError("one class per point")
    if cls.min(initial=0) < 0 or cls.max(initial=0) >= len(NUSCENES_LIDARSEG_CLASSES):
        raise ValueError(f"nuScenes-lidarseg classes are 0..{len(NUSCENES_LIDARSEG_CLASSES) - 1}")
    if ring is not None:
        cloud[:, 4] = np.asarray(ring, np.float32)
    root = Path(root)
    (root / "samples" / "LIDAR_TOP").mkdir(parents=True, exist_ok=True)
    (root / "lidarseg").mkdir(parents=True, exist_ok=True)
    pcd, seg = root / "samples" / "LIDAR_TOP" / f"{name}.pcd.bin", root / "lidarseg" / f"{name}_lidarseg.bin"
    cloud.tofile(pcd)
    cls.astype(np.uint8).tofile(seg)
    return pcd, seg


def read_nuscenes_lidarseg(pcd_bin: Union[str, Path], lidarseg_bin: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """``(points (N, 5), classes uint8)``, checking one class per point as the devkit does."""
    return _read_scan(pcd_bin, 5, lidarseg_bin, np.uint8)
