# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Stage 3: pixel-to-voxel association with occlusion handling.

For frame ``t`` and camera ``c`` the map elements that exist at ``t`` (all static elements near the camera, plus the
dynamic elements of frame ``t``) are projected into the image. A z-buffer is rasterised by splatting each element
as a square whose size follows its projected voxel footprint (at least ``splat_min_px``, so sparse LiDAR samples
still close the surface), and an element is *visible* when its depth is within a tolerance of the z-buffer at its
pixel. Only visible elements read the mask id under their pixel, so a mask labels the first surface it sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from ..data.geometry import project_points
from .config import EngineConfig
from .reconstruction import VoxelMap, rigid_transform, splat_zbuffer


@dataclass
class CameraModel:
    """Calibration of one camera in one frame."""

    name: str
    intrinsics: np.ndarray
    camera2lidar: np.ndarray
    width: int
    height: int


def project_visible(xyz: np.ndarray, world2cam: np.ndarray, cam: CameraModel, footprint: float, cfg: EngineConfig
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Visible points among ``xyz`` (N, 3) seen by ``cam`` at pose ``world2cam``: ``(indices, flat pixel index)``.

    ``footprint`` is the metric size of one sample (voxel size), which sets the splat radius with depth.
    """
    if len(xyz) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pc = rigid_transform(xyz, world2cam[:3, :3], world2cam[:3, 3])
    z = pc[:, 2]
    front = np.flatnonzero((z > cfg.min_depth) & (z < cfg.max_depth))
    pc, z = pc[front], z[front]
    k = np.asarray(cam.intrinsics, np.float64)
    uv, _ = project_points(pc, k)
    ui = np.floor(uv[:, 0] + 0.5).astype(np.int64)
    vi = np.floor(uv[:, 1] + 0.5).astype(np.int64)
    inside = (ui >= 0) & (ui < cam.width) & (vi >= 0) & (vi < cam.height)
    front, ui, vi, z = front[inside], ui[inside], vi[inside], z[inside]
    f = 0.5 * (k[0, 0] + k[1, 1])
    rad = np.clip(np.ceil(cfg.splat_scale * f * footprint / z - 0.5), cfg.splat_min_px, cfg.splat_max_px).astype(int)
    zb = splat_zbuffer(ui, vi, z, rad, cam.width, cam.height)
    pix = vi * cam.width + ui
    vis = z <= zb.reshape(-1)[pix] + cfg.zbuf_tol + cfg.zbuf_tol_rel * z
    return front[vis], pix[vis]


def frame_elements(vmap: VoxelMap, t: int, center: np.ndarray, radius: float) -> np.ndarray:
    """Elements present at frame ``t`` near ``center``: static ones in range plus the frame's dynamic ones."""
    return np.concatenate([vmap.static_near(center, radius), vmap.dynamic_elements(t)])


def world2camera(vmap: VoxelMap, t: int, cam: CameraModel) -> np.ndarray:
    """Map-frame to camera-optical transform at frame ``t``."""
    return np.linalg.inv(vmap.lidar2world[t] @ np.asarray(cam.camera2lidar, np.float64))


def associate(vmap: VoxelMap, t: int, cam: CameraModel, cfg: EngineConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Visible elements of the map in camera ``cam`` at frame ``t``: ``(element ids, flat pixel index)``."""
    w2c = world2camera(vmap, t, cam)
    center = np.linalg.inv(w2c)[:3, 3]
    cand = frame_elements(vmap, t, center[:2], cfg.max_depth)
    idx, pix = project_visible(vmap.element_xyz[cand], w2c, cam, vmap.voxel_size, cfg)
    return cand[idx], pix


def associate_sweep(points: np.ndarray, cam: CameraModel, cfg: EngineConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Single-frame association (baseline): visible points of one sweep (LiDAR frame) in one camera."""
    xyz = np.asarray(points[:, :3], np.float64)
    r = np.linalg.norm(xyz, axis=1)
    ok = np.flatnonzero(np.isfinite(r) & (r >= cfg.min_range))
    idx, pix = project_visible(xyz[ok], np.linalg.inv(np.asarray(cam.camera2lidar, np.float64)), cam,
                               cfg.voxel_size, cfg)
    return ok[idx], pix
