# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation of LiDAR pseudo-labels against ground truth (synthetic drives have exact labels).

Protocol (also stated in the engine report):

* Pseudo objects are matched one-to-one to ground-truth instances by Hungarian matching on point IoU, computed over
  all frames of the drive together (an object is one 4D point set).
* Only points in the evaluation *domain* count, and ground-truth ``-1`` points never count. Domains:
  ``covered`` = points whose map element was visible to some camera in some frame (points the 2D masks can reach);
  ``fov`` = points inside some camera's image in their own frame (the single-frame baseline's reach).
* Evaluated objects: ground-truth instances that appear in the (clean) ground-truth 2D masks of some frame and have
  at least ``min_points`` points in the domain. An unmatched object scores IoU 0. Predicted ``-1`` (ignore) counts
  as "not the object", so ignoring costs recall.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment


def evaluate_points(pred: List[np.ndarray], gt: List[np.ndarray], domain: Optional[List[np.ndarray]] = None,
                    objects: Optional[Iterable[int]] = None, min_points: int = 50) -> Dict[str, object]:
    """Per-object point IoU after Hungarian matching; returns ``mean_iou``, ``per_object``, counts."""
    p_all, g_all = [], []
    for i, (p, g) in enumerate(zip(pred, gt)):
        p, g = np.asarray(p).reshape(-1), np.asarray(g).reshape(-1)
        if p.shape != g.shape:
            raise ValueError(f"frame {i}: prediction has {p.shape[0]} points, ground truth {g.shape[0]}")
        sel = g >= 0
        if domain is not None:
            sel &= np.asarray(domain[i], bool)
        p_all.append(p[sel].astype(np.int64))
        g_all.append(g[sel].astype(np.int64))
    p = np.concatenate(p_all) if p_all else np.zeros(0, np.int64)
    g = np.concatenate(g_all) if g_all else np.zeros(0, np.int64)
    g_ids, g_size = np.unique(g[g > 0], return_counts=True)
    p_ids, p_size = np.unique(p[p > 0], return_counts=True)
    wanted = set(int(x) for x in objects) if objects is not None else None
    eval_ids = [int(k) for k, s in zip(g_ids, g_size) if s >= min_points and (wanted is None or int(k) in wanted)]
    both = (g > 0) & (p > 0)
    per: Dict[int, float] = {k: 0.0 for k in eval_ids}
    matched: Dict[int, int] = {}
    if both.any() and len(g_ids) and len(p_ids):
        gi = np.searchsorted(g_ids, g[both])
        pi = np.searchsorted(p_ids, p[both])
        inter = np.bincount(gi * len(p_ids) + pi, minlength=len(g_ids) * len(p_ids)).astype(np.float64)
        inter = inter.reshape(len(g_ids), len(p_ids))
        iou = inter / (g_size[:, None] + p_size[None, :] - inter)
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] > 0 and int(g_ids[r]) in per:
                per[int(g_ids[r])] = float(iou[r, c])
                matched[int(g_ids[r])] = int(p_ids[c])
    vals = list(per.values())
    return {"mean_iou": float(np.mean(vals)) if vals else float("nan"), "num_objects": len(vals),
            "per_object": per, "matches": matched, "num_points": int(len(g)),
            "num_object_points": int(sum(s for k, s in zip(g_ids, g_size) if int(k) in per)),
            "ignored_pred_fraction": float((p == -1).mean()) if len(p) else 0.0}
