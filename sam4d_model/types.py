# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Plain data types shared by the model, the data tools and the ROS node.

Conventions (used everywhere in the project):

* Points are in the LiDAR frame, metres, ``float32``, shape ``(N, C)`` with ``C >= 3`` and xyz first.
* Images are ``uint8`` RGB, shape ``(H, W, 3)``.
* ``intrinsics`` is the 3x3 pinhole matrix of the (undistorted) image.
* ``camera2lidar`` is the 4x4 transform taking camera-optical-frame points (x right, y down, z forward)
  into the LiDAR frame: ``p_lidar = camera2lidar @ p_cam``.
* ``lidar2world`` is the 4x4 pose of the LiDAR in a fixed world/odom frame: ``p_world = lidar2world @ p_lidar``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


@dataclass
class CameraFrame:
    """One camera image with its calibration."""

    name: str
    image: np.ndarray
    intrinsics: np.ndarray
    camera2lidar: np.ndarray

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Frame:
    """One synchronised camera(s) + LiDAR sample."""

    points: np.ndarray
    cameras: List[CameraFrame]
    lidar2world: np.ndarray = field(default_factory=lambda: np.eye(4))
    timestamp: float = 0.0
    index: int = 0

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


@dataclass
class FrameLabels:
    """Ground-truth (or pseudo) labels of one frame.

    ``point_instance``: ``(N,)`` int32, object id per point, ``0`` = no object, ``-1`` = ignore.
    ``image_instance``: camera name -> ``(H, W)`` int32 object id per pixel, ``0`` = no object.
    ``point_class`` / ``image_class``: optional semantic class ids of the same shapes.
    """

    point_instance: np.ndarray
    image_instance: Dict[str, np.ndarray]
    point_class: Optional[np.ndarray] = None
    image_class: Optional[Dict[str, np.ndarray]] = None
    object_classes: Dict[int, str] = field(default_factory=dict)
