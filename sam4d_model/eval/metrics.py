# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Segmentation metrics: mask IoU (J), boundary F-measure (F, DAVIS-style), LiDAR point IoU.

Conventions: an empty prediction of an empty ground truth scores 1 (the object is correctly reported absent);
``ignore`` masks remove points/pixels from both sides before counting.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Optional

import cv2
import numpy as np


def mask_iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """Intersection over union of two boolean masks of the same shape (images or point lists)."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        pred, gt = pred[keep], gt[keep]
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt)) / float(union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a boolean mask (pixels of the mask with a 4-neighbour outside it)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (eroded == 0)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure: precision/recall of boundary pixels within a tolerance of ``bound_th`` x diagonal."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"boundary_f needs two 2-D masks of one shape, got {pred.shape} and {gt.shape}")
    bp, bg = _boundary(pred), _boundary(gt)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    radius = max(1, int(math.ceil(bound_th * math.hypot(*pred.shape))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    gt_dil = cv2.dilate(bg.astype(np.uint8), disk) > 0
    pred_dil = cv2.dilate(bp.astype(np.uint8), disk) > 0
    precision = float((bp & gt_dil).sum()) / n_p
    recall = float((bg & pred_dil).sum()) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def j_and_f(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """Region similarity J (IoU), contour accuracy F and their mean J&F for one image mask."""
    j = mask_iou(pred, gt)
    f = boundary_f(pred, gt)
    return {"J": j, "F": f, "J&F": 0.5 * (j + f)}


class MeanMeter:
    """Running means of named scalar metrics."""

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}

    def add(self, name: str, value: float) -> None:
        if value is None or not math.isfinite(value):
            return
        self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.counts[name] = self.counts.get(name, 0) + 1

    def update(self, values: Dict[str, float]) -> None:
        for k, v in values.items():
            self.add(k, v)

    def mean(self, name: str) -> float:
        c = self.counts.get(name, 0)
        return self.sums[name] / c if c else float("nan")

    def summary(self, names: Optional[Iterable[str]] = None) -> Dict[str, float]:
        keys = list(names) if names is not None else sorted(self.sums)
        return {k: self.mean(k) for k in keys}
