# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Metrics and simulated prompts used by training and evaluation."""

import numpy as np
import pytest

from sam4d_model.data.geometry import project_to_image
from sam4d_model.eval.metrics import MeanMeter, boundary_f, j_and_f, mask_iou
from sam4d_model.training import prompt_sim as ps


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_mask_iou_and_jf():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[:, :5] = True
    assert mask_iou(a, b) == pytest.approx(25 / 75)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros(5, bool), np.zeros(5, bool)) == 1.0
    ignore = np.zeros((10, 10), bool)
    ignore[5:, :5] = True
    assert mask_iou(a, b, ignore) == pytest.approx(25 / 50)
    with pytest.raises(ValueError):
        mask_iou(a, b[:5])
    d = _disk(100, 100, 50, 50, 20)
    assert j_and_f(d, d) == {"J": 1.0, "F": 1.0, "J&F": 1.0}
    shifted = np.roll(d, 1, axis=1)
    assert boundary_f(shifted, d) == pytest.approx(1.0)  # within tolerance
    far = np.roll(d, 15, axis=1)
    assert boundary_f(far, d) < 0.5
    assert boundary_f(np.zeros_like(d), d) == 0.0


def test_mean_meter_skips_nan():
    m = MeanMeter()
    m.update({"a": 1.0, "b": float("nan")})
    m.add("a", 0.0)
    assert m.mean("a") == 0.5 and np.isnan(m.mean("b"))


def test_image_clicks_boxes_corrections():
    gt = _disk(60, 80, 30, 40, 12)
    rng = np.random.default_rng(0)
    for method in ("uniform", "center"):
        p = ps.image_click(gt, rng, method)
        assert gt[int(p[1]), int(p[0])]
    c = ps.image_click(gt, method="center")
    assert abs(c[0] - 40.5) <= 1 and abs(c[1] - 30.5) <= 1
    assert ps.image_click(np.zeros_like(gt)) is None
    box = ps.image_box(gt)
    np.testing.assert_array_equal(box, [28, 18, 53, 43])
    noisy = ps.image_box(gt, rng, noise=0.1)
    assert np.all(np.abs(noisy - box) <= 20) and noisy[2] > noisy[0]
    # prediction misses the right half: the correction is a positive click there
    pred = gt.copy()
    pred[:, 40:] = False
    pt, label = ps.image_correction(pred, gt, rng, "center")
    assert label == 1 and gt[int(pt[1]), int(pt[0])] and not pred[int(pt[1]), int(pt[0])]
    # prediction leaks: negative click outside the object
    leak = gt | _disk(60, 80, 30, 70, 8)
    pt, label = ps.image_correction(leak, gt, rng)
    assert label == 0 and leak[int(pt[1]), int(pt[0])] and not gt[int(pt[1]), int(pt[0])]
    assert ps.image_correction(gt, gt) is None


def test_lidar_clicks_boxes_corrections():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(-10, 10, (2000, 3)).astype(np.float32)
    gt = np.linalg.norm(xyz - [2, 2, 0], axis=1) < 4
    p = ps.lidar_click(gt, xyz, rng)
    assert np.linalg.norm(p - [2, 2, 0]) < 4
    box = ps.lidar_box(gt, xyz)
    assert box.shape == (2, 3) and np.all(box[0] <= xyz[gt].min(0)) and np.all(box[1] >= xyz[gt].max(0))
    pred = gt & (xyz[:, 0] < 2)
    pt, label = ps.lidar_correction(pred, gt, xyz, rng, "center")
    assert label == 1 and pt[0] >= 2 - 1e-6
    assert ps.lidar_correction(gt, gt, xyz) is None


def test_projection_helper():
    k = np.array([[100, 0, 50], [0, 100, 40], [0, 0, 1]], float)
    cam2lidar = np.eye(4)
    cam2lidar[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical z forward = lidar x
    pts = np.array([[10, 0, 0], [-5, 0, 0], [10, 100, 0]], np.float32)
    uv, _, ok = project_to_image(pts, k, cam2lidar, 100, 80)
    np.testing.assert_allclose(uv[0], [50, 40])
    assert ok.tolist() == [True, False, False]
