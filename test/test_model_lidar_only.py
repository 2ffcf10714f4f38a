# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A LiDAR-only model (``use_cameras: false``, ``sam4d_tiny_lidar``): config inheritance, cameras ignored by the
model, image prompts carried to the LiDAR point under them, image masks from the LiDAR masks, LiDAR-only training.
"""

import dataclasses

import numpy as np
import pytest
import torch

from sam4d_model import geometric as geo
from sam4d_model.config import load_config
from sam4d_model.data.synth import SynthDrive, sample_config
from sam4d_model.data.waymo4dseg import InMemorySequence
from sam4d_model.modeling import build_sam4d
from sam4d_model.tracker import StreamingTracker
from sam4d_model.training.trainer import TrainConfig, train
from sam4d_model.types import CameraFrame, Frame

SMALL = dict(width=160, height=120, beams=16, azimuths=256)


@pytest.fixture(scope="module")
def drive():
    d = SynthDrive(11, 3, sample_config(**SMALL))
    return [d.render(i) for i in range(3)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam4d(load_config("sam4d_tiny_lidar")).eval()


def test_config_inherits_its_base(tmp_path):
    tiny, lid = load_config("sam4d_tiny"), load_config("sam4d_tiny_lidar")
    assert not lid.use_cameras and tiny.use_cameras
    assert dataclasses.replace(lid, name=tiny.name, use_cameras=True) == tiny
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: sam4d_tiny\nlidar:\n  no_such_key: 1\n")
    with pytest.raises(ValueError, match="no_such_key"):
        load_config(bad)


def _with_image(frame: Frame, image: np.ndarray) -> Frame:
    cams = [CameraFrame(c.name, image, c.intrinsics, c.camera2lidar) for c in frame.cameras]
    return Frame(frame.points, cams, frame.lidar2world, frame.timestamp, frame.index)


def _object_under_pixel(sf):
    """An object with points in the camera, a pixel of one of its non-ground camera-visible points, and that point."""
    cam = sf.frame.cameras[0]
    xyz, finite = geo.finite_xyz(sf.frame.points)
    ng = finite & ~geo.ground_mask(xyz)
    uv, _, ok = geo.project_to_image(xyz, cam.intrinsics, cam.camera2lidar, cam.width, cam.height)
    ids, counts = np.unique(sf.labels.point_instance[ok & ng & (sf.labels.point_instance > 0)], return_counts=True)
    oid = int(ids[np.argmax(counts)])
    for i in np.flatnonzero(ok & ng & (sf.labels.point_instance == oid)):
        s = geo.pixel_seed(xyz, ng, uv[i], cam.intrinsics, cam.camera2lidar, cam.width, cam.height, 12.0, 3.0)
        if s is not None and sf.labels.point_instance[s] == oid:
            return oid, uv[i], xyz[s]
    pytest.skip("no pixel of the object lands on it")


def test_cameras_do_not_reach_the_model(model, drive):
    f = drive[0].frame
    with torch.inference_mode():
        a = model.encode_frame(f)
        b = model.encode_frame(_with_image(f, np.zeros_like(f.cameras[0].image)))
    assert not a.has_image and not a.cams and a.has_lidar
    assert torch.equal(a.pts_tokens, b.pts_tokens) and torch.equal(a.pts_pos, b.pts_pos)


def test_image_click_becomes_the_lidar_click_under_it(model, drive):
    sf = drive[0]
    oid, uv, xyz = _object_under_pixel(sf)
    by_image = StreamingTracker(model)
    by_image.add_prompt(1, image_points=uv[None], image_labels=np.ones(1, np.int64))
    r_img = by_image.step(sf.frame)
    by_lidar = StreamingTracker(model)
    by_lidar.add_prompt(1, lidar_points=xyz[None], lidar_labels=np.ones(1, np.int64))
    r_pts = by_lidar.step(sf.frame)
    np.testing.assert_array_equal(r_img.point_scores, r_pts.point_scores)
    # image masks come from the LiDAR masks (the model has none of its own)
    assert by_image.image_from_lidar and r_img.image_masks[0].shape == (1, sf.frame.cameras[0].height,
                                                                         sf.frame.cameras[0].width)
    xyz, finite = geo.finite_xyz(sf.frame.points)
    expect = geo.image_masks_from_lidar(xyz, r_img.point_masks, sf.frame.cameras, geo.frame_ground_height(xyz, finite))
    if r_img.point_masks.any():
        np.testing.assert_array_equal(r_img.image_masks[0], expect[0])


def test_image_click_on_nothing_warns(model, drive):
    sf = drive[0]
    tr = StreamingTracker(model)
    tr.add_prompt(1, image_points=np.array([[0.0, 0.0]]), image_labels=np.ones(1, np.int64))  # sky corner
    with pytest.warns(UserWarning, match="no LiDAR point under them"):
        tr.step(sf.frame)


@pytest.mark.filterwarnings("ignore:spconv has no CPU backward")
def test_lidar_only_training_step(drive, tmp_path):
    seq = InMemorySequence([(sf.frame, sf.labels) for sf in drive], "small")
    cfg = TrainConfig(model="sam4d_tiny_lidar", out_dir=str(tmp_path / "run"), steps=1, clip_len=2, max_objects=2,
                      max_points=3000, min_pixels=10, min_points=5, prob_image_only=1.0, prob_lidar_only=0.0,
                      prob_correct=1.0, log_every=1)
    train(cfg, [seq], progress=False)
    import csv

    row = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert np.isfinite(float(row["total"])) and float(row["pts_dice"]) > 0
    assert not row.get("img_dice")  # no image term: the model saw no camera


@pytest.mark.filterwarnings("ignore:spconv has no CPU backward")
def test_lidar_only_training_never_prompts_the_image(drive):
    """A prompted frame where the object has image pixels but no LiDAR points gives it no prompt (it used to fall
    back to an image prompt, which a LiDAR-only model cannot take: the 2026-12-07 run crashed at step 7,750)."""
    from sam4d_model.training.trainer import ClipLoss, ClipPlan
    from sam4d_model.types import FrameLabels

    sf0, sf1 = drive[0], drive[1]
    oid, _, _ = _object_under_pixel(sf0)
    lab1 = FrameLabels(np.where(sf1.labels.point_instance == oid, 0, sf1.labels.point_instance),
                       sf1.labels.image_instance)
    cam = sf0.frame.cameras[0].name
    assert (lab1.image_instance[cam] == oid).any() and not (lab1.point_instance == oid).any()
    plan = ClipPlan([sf0.frame, sf1.frame], [sf0.labels, lab1], [oid], [0, 1], {oid: "click"}, {oid: "image"}, [])
    torch.manual_seed(0)
    m = build_sam4d(load_config("sam4d_tiny_lidar"))
    terms = ClipLoss(m, TrainConfig(model="sam4d_tiny_lidar")).forward(plan, np.random.default_rng(0))
    assert torch.isfinite(terms["total"]) and "img_dice" not in terms
