# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Simulated prompts for training and evaluation (SAM / SAM2 / SAM4D style).

* First prompt on a conditioning frame: a positive click inside the ground-truth mask, a (noisy) box, or the mask.
* Corrections: clicks sampled from the error region between a prediction and the ground truth: a positive click in
  a false-negative region or a negative click in a false-positive region, from the larger of the two.
* Both modalities: image masks ``(H, W)`` bool with pixel clicks ``(x, y)``; LiDAR masks ``(N,)`` bool over points
  with 3-D clicks (the xyz of a point) and axis-aligned 3-D boxes.

Clicks can be drawn uniformly from the region (SAM2's default) or at its "centre" (the pixel farthest from the
region boundary, for the image; the point nearest to the region's medoid, for LiDAR), as evaluation protocols do.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ----------------------------------------------------------------------------------------------- image

def image_click(mask: np.ndarray, rng=None, method: str = "uniform") -> Optional[np.ndarray]:
    """A pixel (x, y) inside ``mask`` (pixel centre), or None when the mask is empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    if method == "center":
        padded = np.pad(mask.astype(np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    elif method == "uniform":
        ys, xs = np.nonzero(mask)
        i = int(_rng(rng).integers(len(xs)))
        y, x = ys[i], xs[i]
    else:
        raise ValueError(f"unknown click method {method!r} (use 'uniform' or 'center')")
    return np.array([x + 0.5, y + 0.5], np.float32)


def image_box(mask: np.ndarray, rng=None, noise: float = 0.0, max_noise_px: float = 20.0) -> Optional[np.ndarray]:
    """Tight box (x0, y0, x1, y1) of ``mask`` with optional Gaussian corner noise (std = noise x side, clipped)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    if noise > 0:
        w, h = box[2] - box[0], box[3] - box[1]
        std = np.array([w, h, w, h], np.float32) * noise
        jitter = np.clip(_rng(rng).normal(0.0, 1.0, 4) * std, -max_noise_px, max_noise_px)
        box = box + jitter.astype(np.float32)
        H, W = mask.shape
        box = np.clip(box, 0, [W, H, W, H]).astype(np.float32)
        if box[2] <= box[0] + 1 or box[3] <= box[1] + 1:
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    return box


def image_correction(pred: np.ndarray, gt: np.ndarray, rng=None, method: str = "uniform"
                     ) -> Optional[Tuple[np.ndarray, int]]:
    """Corrective click for an image prediction: (point, label) or None when the prediction is exact."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    fn = gt & ~pred
    fp = pred & ~gt
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn == 0 and n_fp == 0:
        return None
    if method == "center":
        # Click at the centre of the largest connected error region.
        region, label = (fn, 1) if n_fn >= n_fp else (fp, 0)
        n, cc, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return image_click(cc == largest, method="center"), label
    rng = _rng(rng)
    # Choose the error type in proportion to its area (SAM2's uniform sampling over the error region).
    label = 1 if rng.random() < n_fn / (n_fn + n_fp) else 0
    return image_click(fn if label else fp, rng, "uniform"), label


# ----------------------------------------------------------------------------------------------- LiDAR

def lidar_click(mask: np.ndarray, xyz: np.ndarray, rng=None, method: str = "uniform") -> Optional[np.ndarray]:
    """Xyz of a point inside the per-point ``mask``, or None when it is empty."""
    mask = np.asarray(mask, bool)
    idx = np.nonzero(mask)[0]
    if len(idx) == 0:
        return None
    if method == "center":
        pts = xyz[idx, :3].astype(np.float64)
        med = np.median(pts, axis=0)
        i = idx[int(np.argmin(np.linalg.norm(pts - med, axis=1)))]
    elif method == "uniform":
        i = idx[int(_rng(rng).integers(len(idx)))]
    else:
        raise ValueError(f"unknown click method {method!r} (use 'uniform' or 'center')")
    return xyz[i, :3].astype(np.float32)


def lidar_box(mask: np.ndarray, xyz: np.ndarray, rng=None, noise: float = 0.0, max_noise_m: float = 0.5
              ) -> Optional[np.ndarray]:
    """Axis-aligned 3-D box (2, 3) [min, max] of the masked points, with optional noise on the corners."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    pts = xyz[mask, :3]
    box = np.stack([pts.min(0), pts.max(0)]).astype(np.float32)
    if noise > 0:
        size = np.maximum(box[1] - box[0], 0.1)
        jitter = np.clip(_rng(rng).normal(0.0, 1.0, (2, 3)) * size * noise, -max_noise_m, max_noise_m)
        box = box + jitter.astype(np.float32)
        box = np.stack([np.minimum(box[0], box[1]), np.maximum(box[0], box[1])]).astype(np.float32)
    return box


def lidar_correction(pred: np.ndarray, gt: np.ndarray, xyz: np.ndarray, rng=None, method: str = "uniform"
                     ) -> Optional[Tuple[np.ndarray, int]]:
    """Corrective 3-D click for a LiDAR prediction: (xyz, label) or None when exact."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    fn = gt & ~pred
    fp = pred & ~gt
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn == 0 and n_fp == 0:
        return None
    if method == "center":
        label = 1 if n_fn >= n_fp else 0
        return lidar_click(fn if label else fp, xyz, method="center"), label
    rng = _rng(rng)
    label = 1 if rng.random() < n_fn / (n_fn + n_fp) else 0
    return lidar_click(fn if label else fp, xyz, rng, "uniform"), label


