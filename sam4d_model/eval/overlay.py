# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Pictures for people: masks blended on the image, labelled points projected on it, bird's-eye view.

Shared by the evaluation tool, the demo and the ROS node's ``~/overlay`` output (one palette everywhere).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ..data.geometry import project_to_image

GREY = np.array([150, 150, 150], np.uint8)


def palette(obj_id: int) -> np.ndarray:
    """A stable, well separated RGB colour (uint8) for an object id (golden-ratio hue steps)."""
    h = (int(obj_id) * 0.618033988749895) % 1.0
    i = int(h * 6)
    f = h * 6 - i
    v, s = 1.0, 0.85
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return (np.array(rgb) * 255).astype(np.uint8)


def colors_for(ids: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours for object ids (ids < 1: grey)."""
    ids = np.asarray(ids).reshape(-1)
    out = np.tile(GREY, (len(ids), 1))
    for oid in np.unique(ids[ids > 0]):
        out[ids == oid] = palette(int(oid))
    return out


def blend_id_map(rgb: np.ndarray, id_map: np.ndarray, alpha: float = 0.5, contours: bool = True) -> np.ndarray:
    """Blend per-object colours of an id map (0 = none) onto an RGB image, with object outlines."""
    out = rgb.astype(np.float32).copy()
    for oid in np.unique(id_map[id_map > 0]):
        m = id_map == oid
        out[m] = (1 - alpha) * out[m] + alpha * palette(int(oid))
    out = out.astype(np.uint8)
    if contours:
        for oid in np.unique(id_map[id_map > 0]):
            cs, _ = cv2.findContours((id_map == oid).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, cs, -1, tuple(int(c) for c in palette(int(oid))), 1)
    return out


def draw_points(rgb: np.ndarray, xyz: np.ndarray, point_ids: np.ndarray, intrinsics: np.ndarray,
                camera2lidar: np.ndarray, max_background: int = 30000, radius: int = 1) -> np.ndarray:
    """Project LiDAR points onto the image: object points in their colour, others grey (subsampled)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    finite = np.isfinite(xyz[:, :3]).all(1)
    sel = np.flatnonzero(finite)
    ids = np.asarray(point_ids).reshape(-1)
    bg = sel[ids[sel] < 1]
    if bg.size > max_background:
        bg = bg[:: int(np.ceil(bg.size / max_background))]
    sel = np.concatenate([bg, sel[ids[sel] >= 1]])
    if sel.size == 0:
        return out
    uv, _, ok = project_to_image(xyz[sel], intrinsics, camera2lidar, w, h)
    u, v = uv[ok, 0].astype(np.int64), uv[ok, 1].astype(np.int64)
    cols = colors_for(ids[sel][ok])
    for du in range(-radius + 1, radius + 1):
        for dv in range(-radius + 1, radius + 1):
            out[np.clip(v + dv, 0, h - 1), np.clip(u + du, 0, w - 1)] = cols
    return out


def overlay(rgb: np.ndarray, id_map: Optional[np.ndarray], xyz: Optional[np.ndarray], point_ids: Optional[np.ndarray],
            intrinsics: np.ndarray, camera2lidar: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image with masks blended and labelled points projected (either part optional)."""
    out = blend_id_map(rgb, id_map, alpha) if id_map is not None else rgb.copy()
    if xyz is not None and point_ids is not None and len(xyz):
        out = draw_points(out, xyz, point_ids, intrinsics, camera2lidar)
    return out


def bev(xyz: np.ndarray, point_ids: np.ndarray, extent: float = 50.0, size: int = 600,
        gt_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Bird's-eye view (x forward = up, y left = left) of a labelled cloud; optional ground truth beside it."""
    def one(ids):
        img = np.full((size, size, 3), 20, np.uint8)
        ok = np.isfinite(xyz[:, :3]).all(1)
        x, y = xyz[ok, 0], xyz[ok, 1]
        r = (size / 2 - x / extent * size / 2).astype(np.int64)
        c = (size / 2 - y / extent * size / 2).astype(np.int64)
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        lab = np.asarray(ids).reshape(-1)[ok][inside]
        order = np.argsort(lab >= 1, kind="stable")  # objects drawn last
        img[r[inside][order], c[inside][order]] = colors_for(lab[order])
        cv2.circle(img, (size // 2, size // 2), 4, (255, 255, 255), -1)
        return img

    pred = one(point_ids)
    if gt_ids is None:
        return pred
    gt = one(gt_ids)
    cv2.putText(pred, "prediction", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    cv2.putText(gt, "ground truth", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    return np.concatenate([pred, np.full((size, 4, 3), 255, np.uint8), gt], 1)


def save_png(path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG (atomically)."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)
