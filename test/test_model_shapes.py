# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Shapes and dtypes through the whole tiny network (tracker API), odd clouds, voxel matching."""

import numpy as np
import pytest
import torch
from test_model_utils import make_cloud, make_frame

from sam4d_model.config import load_config
from sam4d_model.geometry import build_voxel_pyramid
from sam4d_model.modeling import build_sam4d
from sam4d_model.tracker import StreamingTracker


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return build_sam4d(load_config("sam4d_tiny"))


def _prompt(tr, oid, image, lidar):
    if image:
        tr.add_prompt(oid, image_points=[[40 + 10 * oid, 50]], image_labels=[1])
    if lidar:
        tr.add_prompt(oid, lidar_points=[[8.0 + oid, 1.0, -1.0]], lidar_labels=[1])


@pytest.mark.parametrize("image,lidar", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("num_obj", [1, 3])
def test_tracker_shapes(model, image, lidar, num_obj):
    tr = StreamingTracker(model, max_prompted_frames=2, num_past_frames=6)
    n = 1500 if lidar else 0
    for oid in range(1, num_obj + 1):
        _prompt(tr, oid, image, lidar)
    for t in range(3):
        fr = make_frame(n=n, seed=t, image=image, index=t)
        res = tr.step(fr)
        assert res.obj_ids == list(range(1, num_obj + 1))
        assert res.point_masks.shape == (num_obj, n) and res.point_masks.dtype == bool
        assert res.point_scores.shape == (num_obj, n) and res.point_scores.dtype == np.float32
        assert len(res.image_masks) == (1 if image else 0)
        for m in res.image_masks:
            assert m.shape == (num_obj, 96, 160) and m.dtype == bool
        assert res.object_scores.shape == (num_obj,) and np.all((res.object_scores >= 0) & (res.object_scores <= 1))
        assert res.iou_scores.shape == (num_obj,)
        for key in ("image_encoder", "lidar_encoder", "umpe", "memory_attention", "decoder", "memory_encoder"):
            if (key == "image_encoder" and not image) or (key == "lidar_encoder" and not lidar and not image):
                continue
            assert key in res.timings
    assert tr.num_stored_memories == num_obj * 3


def test_step_output_dtypes(model):
    from sam4d_model.modeling import ObjectPrompt

    fr = make_frame(n=3000, seed=3)
    with torch.inference_mode():
        f = model.encode_frame(fr)
        p = ObjectPrompt(pts_points=torch.tensor([[6.0, 0.0, -1.0]]), pts_labels=torch.tensor([1]))
        out = model(f, [[], []], [p, p])
    h = model.image_size // 16
    assert out.img_logits.shape == (2, 1, 4 * h, 4 * h) and out.img_logits.dtype == torch.float32
    assert out.img_logits_all.shape == (2, 1, 4, 4 * h, 4 * h)
    assert out.pts_logits.shape == (2, f.pyr.num_points) and out.pts_logits_all.shape[1] == 4
    assert out.pts_iou.shape == (2,) and out.pts_obj.shape == (2,)
    assert len(out.new_memory) == 2
    e = out.new_memory[0]
    assert e.img_mem.shape == (1, h * h, model.d) and e.pts_mem.shape == (f.pts_tokens.shape[0], model.d)
    assert e.obj_ptr_img.shape == (model.d,) and e.obj_ptr_pts.shape == (model.d,)


@pytest.mark.parametrize("kind", ["one", "dup", "nan", "empty", "big"])
def test_odd_clouds(model, kind):
    if kind == "one":
        pts = np.array([[5.0, 1.0, 0.0, 0.5]], np.float32)
    elif kind == "dup":
        pts = np.repeat(make_cloud(50, seed=1), 20, axis=0)
    elif kind == "nan":
        pts = make_cloud(800, seed=2)
        pts[::7, 0] = np.nan
        pts[3, 2] = np.inf
        pts[5, 3] = np.nan  # NaN intensity only: row kept, feature zeroed
    elif kind == "empty":
        pts = np.zeros((0, 4), np.float32)
    else:
        pts = make_cloud(200_000, seed=4, extent=60.0)
    fr = make_frame(n=0, seed=0)
    fr.points = pts
    tr = StreamingTracker(model)
    tr.add_prompt(7, image_points=[[80, 40]], lidar_points=[[5.0, 1.0, 0.0]])
    res = tr.step(fr)
    res2 = tr.step(fr)
    n = len(pts)
    for r in (res, res2):
        assert r.point_masks.shape == (1, n) and r.point_scores.shape == (1, n)
        assert r.image_masks[0].shape == (1, 96, 160)
    if kind == "nan":
        bad = ~np.isfinite(pts[:, :3]).all(1)
        assert bad.sum() > 0
        assert not res.point_masks[:, bad].any() and np.all(res.point_scores[:, bad] == 0)
        assert np.all(res.point_scores[:, 5] > 0)


@pytest.mark.parametrize("backend", ["spconv", "torch"])
def test_voxel_levels_match_sparse_backbone(model, backend):
    pyr = build_voxel_pyramid(make_cloud(5000, seed=5), 0.15)
    enc = model.lidar_encoder
    old, enc.backend = enc.backend, backend
    try:
        with torch.inference_mode():
            out = enc(pyr)
    finally:
        enc.backend = old
    assert out["tokens"].shape == (pyr.num_voxels(16), model.d)
    assert out["feat_s8"].shape[0] == pyr.num_voxels(8) and out["feat_s4"].shape[0] == pyr.num_voxels(4)
    # every voxel received a feature from the backend (a zero row would mean a key mismatch with the pyramid)
    assert (out["feat_s4"].abs().sum(1) > 0).all() and (out["tokens"].abs().sum(1) > 0).all()
    l16 = pyr.level(16)
    centre = (l16.coords.float() + 0.5) * 16 * pyr.voxel_size + pyr.origin
    assert ((out["token_xyz"] - centre).abs() <= 8 * pyr.voxel_size + 1e-4).all()


def test_frame_without_objects_is_cheap(model):
    tr = StreamingTracker(model)
    res = tr.step(make_frame(n=1000))
    assert res.obj_ids == [] and res.point_masks.shape == (0, 1000) and tr.num_stored_memories == 0
    assert set(res.timings) == {"total"}
    tr.add_prompt(1, lidar_points=[[5, 0, -1]])
    tr.step(make_frame(n=1000))
    assert tr.remove_object(1) and not tr.remove_object(1)
    assert tr.object_ids == [] and tr.num_stored_memories == 0
