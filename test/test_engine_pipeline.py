# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Data engine stages 2-4 on a short synthetic drive: accuracy with clean/corrupted masks, dynamics, occlusion."""

import numpy as np
import pytest

from sam4d_model.engine import CorruptionConfig, EngineConfig, FrameMasks, GroundTruthSource, label_sequence
from sam4d_model.engine.association import CameraModel, project_visible
from sam4d_model.engine.corruption import Corruptor
from sam4d_model.engine.reconstruction import build_voxel_map
from sam4d_model.engine.testing import drive_config, moving_object_ids, synthetic_sequence

SEED, FRAMES = 0, 20


@pytest.fixture(scope="module")
def drive():
    return synthetic_sequence(SEED, FRAMES)


@pytest.fixture(scope="module")
def clean(drive):
    return label_sequence(drive, GroundTruthSource(), EngineConfig(), baseline=True, evaluate=True)


def test_gt_masks_give_accurate_lidar_labels(clean):
    ours, base = clean.metrics["ours"]["covered"], clean.metrics["baseline"]["covered"]
    assert ours["num_objects"] >= 15
    assert ours["mean_iou"] >= 0.85, ours["per_object"]
    assert ours["mean_iou"] > base["mean_iou"]
    # apples to apples on the baseline's own reach (points inside the camera in their own frame)
    assert clean.metrics["ours"]["fov"]["mean_iou"] > clean.metrics["baseline"]["fov"]["mean_iou"]


def test_result_structure(drive, clean):
    assert len(clean.point_labels) == FRAMES
    for t in (0, FRAMES - 1):
        f = drive.frame(t)
        pl = clean.point_labels[t]
        assert pl.shape == (f.num_points,) and pl.dtype == np.int32
        ids = set(np.unique(pl).tolist()) - {0, -1}
        assert ids <= set(clean.objects)
        im = clean.image_labels(t)["FRONT"]
        assert im.shape == f.cameras[0].image.shape[:2]
        assert set(np.unique(im).tolist()) - {0} <= set(clean.objects)
        # never-seen points are ignore, seen ones are not
        assert np.all(pl[~clean.covered[t]] == -1)
    for o in clean.objects.values():
        assert 0 < o["score"] <= 1 and o["volume_m3"] > 0 and o["num_points"] > 0 and o["masklets"]


def test_corrupted_masks_beat_single_frame_baseline(drive):
    corr = CorruptionConfig(boundary_px=3, miss_rate=0.1, switch_rate=0.05, seed=1)
    res = label_sequence(drive, GroundTruthSource(corr), EngineConfig(), baseline=True, evaluate=True)
    ours, base = res.metrics["ours"]["covered"], res.metrics["baseline"]["covered"]
    # the acceptance numbers (>= 0.75) are measured at full resolution by benchmarks/engine_speed.py; at this
    # quarter resolution 3 px of boundary noise is twice as harsh
    assert ours["mean_iou"] >= 0.6
    assert ours["mean_iou"] > base["mean_iou"] + 0.1
    assert res.metrics["ours"]["fov"]["mean_iou"] > res.metrics["baseline"]["fov"]["mean_iou"]


def _dynamic_points(vmap):
    """Per map point (all frames): whether it lies in a dynamic (per-frame) element."""
    pe = vmap.point_element
    dyn = np.zeros(len(pe), bool)
    dyn[pe >= 0] = vmap.element_frame[pe[pe >= 0]] >= 0
    return dyn


def test_moving_objects_are_kept_per_frame(drive):
    frames = [drive.frame(t) for t in range(FRAMES)]
    vmap = build_voxel_map([f.points for f in frames], [f.lidar2world for f in frames], EngineConfig())
    gt = np.concatenate([drive.labels(t).point_instance for t in range(FRAMES)])
    moving = np.isin(gt, moving_object_ids(SEED, FRAMES, drive_config()))
    dyn = _dynamic_points(vmap)
    assert moving.sum() > 1000
    assert dyn[moving].mean() > 0.6  # most moving points are not smeared into the static map
    assert dyn[gt == 0].mean() < 0.03  # and the static world stays static: background,
    # Static objects mostly: dynamic growth takes sparsely hit points of parked cars and poles (18 % on this
    # quarter-resolution drive), which then lose multi-frame accumulation, in exchange for more complete walking
    # pedestrians: a net IoU gain on the 100-frame benchmark drives (NOTES.md).
    assert dyn[(gt > 0) & ~moving].mean() < 0.25
    # dynamic elements belong to exactly one frame
    for t in (0, FRAMES // 2):
        e = vmap.dynamic_elements(t)
        assert np.all(vmap.element_frame[e] == t)


def test_dynamic_growth_catches_missed_pedestrian_parts(drive):
    frames = [drive.frame(t) for t in range(FRAMES)]
    labels = [drive.labels(t) for t in range(FRAMES)]
    gt = np.concatenate([lab.point_instance for lab in labels])
    ped = np.isin(gt, moving_object_ids(SEED, FRAMES, drive_config())) & (
        np.concatenate([lab.point_class for lab in labels]) == 3)
    grow = EngineConfig().dyn_grow_dist
    assert grow > 0
    dyn = {}
    for g in (0.0, grow):
        vmap = build_voxel_map([f.points for f in frames], [f.lidar2world for f in frames],
                               EngineConfig(dyn_grow_dist=g))
        dyn[g] = _dynamic_points(vmap)
    assert ped.sum() > 100
    assert dyn[grow][ped].mean() > dyn[0.0][ped].mean() + 0.05  # walking pedestrians smear less


def test_upright_base_of_small_objects_is_not_ground():
    # flat ground (z = 0) around a 0.7 m cone-like post: the post's lowest 10 cm fall in voxels whose centroid is
    # below ground_height; the height rule alone calls them ground, which no object masklet may label
    rng = np.random.default_rng(0)
    g = rng.uniform(-6, 6, (60000, 2))
    g = g[np.linalg.norm(g - [2.03, 1.03], axis=1) > 0.25]  # the post hides the ground under it
    ground = np.c_[g, np.zeros(len(g))]
    ang, z = rng.uniform(0, 2 * np.pi, 6000), rng.uniform(0.0, 0.7, 6000)
    r = 0.2 - 0.2 * z  # tapering radius
    post = np.c_[2.03 + r * np.cos(ang), 1.03 + r * np.sin(ang), z]
    pts = np.concatenate([ground, post]).astype(np.float32)
    pose = np.eye(4)
    pose[2, 3] = 1.8  # sensor 1.8 m above the ground: the sweep is given in the LiDAR frame
    sweep = pts - np.array([0, 0, 1.8], np.float32)
    base_ground = {}
    for ratio in (0.0, EngineConfig().ground_flat_ratio):
        vmap = build_voxel_map([sweep], [pose], EngineConfig(detect_dynamic=False, ground_flat_ratio=ratio))
        el = vmap.point_element
        base_ground[ratio] = vmap.element_ground[el[len(ground):][z < 0.1]].mean()  # post points in ground voxels
        far = np.linalg.norm(ground[:, :2] - [2.03, 1.03], axis=1) > 1.0
        assert vmap.element_ground[el[:len(ground)][far]].mean() > 0.99  # the flat ground stays ground
    assert base_ground[0.0] > 0.5  # height rule alone: most of the post's base is "ground"
    assert base_ground[EngineConfig().ground_flat_ratio] < 0.15
    # ground with 1 cm range noise is still flat
    noisy = np.c_[g, rng.normal(0.0, 0.01, len(g)) - 1.8].astype(np.float32)
    vmap = build_voxel_map([noisy], [pose], EngineConfig(detect_dynamic=False))
    assert vmap.element_ground[vmap.point_element].mean() > 0.99


def test_zbuffer_labels_first_surface_only():
    # a wall at 10 m, a 1 m box-face at 5 m in front of its centre; the mask covers the box face
    k = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    cam = CameraModel("c", k, np.eye(4), 128, 128)
    g = np.mgrid[-3:3:0.05, -3:3:0.05].reshape(2, -1).T
    wall = np.c_[g, np.full(len(g), 10.0)]
    f = np.mgrid[-0.5:0.5:0.05, -0.5:0.5:0.05].reshape(2, -1).T
    face = np.c_[f, np.full(len(f), 5.0)]
    xyz = np.concatenate([wall, face])
    idx, _ = project_visible(xyz, np.eye(4), cam, 0.05, EngineConfig())
    vis = np.zeros(len(xyz), bool)
    vis[idx] = True
    assert vis[len(wall):].all()  # the near face is visible
    behind = (np.abs(wall[:, 0]) < 0.4) & (np.abs(wall[:, 1]) < 0.4)
    assert not vis[:len(wall)][behind].any()  # the wall behind it is not
    assert vis[:len(wall)][(np.abs(wall[:, 0]) > 1.5)].mean() > 0.95  # the rest of the wall is


def test_corruptor_is_deterministic_and_calibrated():
    ids = np.zeros((60, 80), np.int32)
    for k in range(1, 9):
        ids[5:55, k * 8:k * 8 + 6] = k
    cfg = CorruptionConfig(boundary_px=2, miss_rate=0.2, switch_rate=0.1, seed=3)
    out_a = [Corruptor(cfg, "s")(t, FrameMasks(ids)).ids for t in range(1)]
    out_b = [Corruptor(cfg, "s")(t, FrameMasks(ids)).ids for t in range(1)]
    assert np.array_equal(out_a[0], out_b[0])
    c = Corruptor(cfg, "s")
    missed = wrong = total = 0
    for t in range(200):
        o = c(t, FrameMasks(ids)).ids
        for k in range(1, 9):
            shown = np.unique(o[ids == k])
            shown = shown[shown > 0]
            total += 1
            if len(shown) == 0:
                missed += 1
            elif k not in shown:
                wrong += 1
    assert 0.12 < missed / total < 0.3
    assert 0.04 < wrong / total < 0.2
    with pytest.raises(ValueError):
        c(5, FrameMasks(ids))
