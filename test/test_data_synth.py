# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Synthetic drives: determinism, scene content and exactness of the ground truth."""

import numpy as np
import pytest

from sam4d_model.data.geometry import invert_transform, project_points, transform_points
from sam4d_model.data.synth import CLASS_NAMES, SynthConfig, SynthDrive, generate_drive

SMALL = SynthConfig(width=160, height=120, beams=16, azimuths=256)


def test_deterministic_and_in_memory():
    a = list(generate_drive(11, 2, config=SMALL))
    b = list(generate_drive(11, 2, config=SMALL))
    c = list(generate_drive(12, 1, config=SMALL))
    for (fa, la), (fb, lb) in zip(a, b):
        assert np.array_equal(fa.points, fb.points)
        assert np.array_equal(fa.cameras[0].image, fb.cameras[0].image)
        assert np.array_equal(la.image_instance["FRONT"], lb.image_instance["FRONT"])
    assert not np.array_equal(a[0][0].cameras[0].image, c[0][0].cameras[0].image)
    f, lab = a[0]
    assert f.points.dtype == np.float32 and f.points.shape[1] == 6
    assert f.cameras[0].image.dtype == np.uint8 and f.cameras[0].image.shape == (120, 160, 3)
    assert lab.point_instance.shape == (f.num_points,) and lab.point_instance.dtype == np.int32
    assert abs(a[1][0].timestamp - a[0][0].timestamp - 0.1) < 1e-6


@pytest.fixture(scope="module")
def drive():
    return SynthDrive(3, 40)  # default sensor config (640x480, 64 x 1024)


CLUTTER = {"bush", "fence", "bin", "bollard", "barrier"}


def test_scene_content(drive):
    classes = {o.cls for o in drive.objects}
    assert set(CLASS_NAMES[1:]) - CLUTTER <= classes, classes
    assert not classes & CLUTTER  # street clutter only when asked for: default scenes stay as they were
    cluttered = SynthDrive(3, 40, SynthConfig(clutter_density=1.5, parking_gap=(0.4, 1.0)))
    assert CLUTTER <= {o.cls for o in cluttered.objects}
    parked = sorted(o.s0 for o in cluttered.objects if o.cls == "car" and o.speed == 0 and o.lateral < 0)
    assert len(parked) > len([o for o in drive.objects if o.cls == "car" and o.speed == 0 and o.lateral < 0])
    assert 5.0 <= drive.ego_speed <= 15.0
    moving = [o for o in drive.objects if o.speed > 0]
    assert len(moving) > 5
    # ego moves along the road with the configured speed
    p0, p1 = drive.lidar2world(0.0), drive.lidar2world(1.0)
    assert 4.0 < np.linalg.norm(p1[:3, 3] - p0[:3, 3]) < 16.0


def test_ground_truth_exact(drive):
    seen_ids = []
    for i in (0, 39):
        sf = drive.render(i)
        f, lab = sf.frame, sf.labels
        t = drive.time_of(i)
        pw = transform_points(f.lidar2world, f.points)
        ids = [int(k) for k in np.unique(lab.point_instance) if k > 0]
        assert len(ids) > 20
        for k in ids:
            d = drive.surface_distance(t, k, pw[lab.point_instance == k])
            assert d.max() < 0.02, (k, drive.object_classes[k], d.max())
        assert np.abs(pw[lab.point_instance == 0, 2]).max() < 0.02  # unlabelled points are ground
        # reprojection of labelled points into the image
        cam = f.cameras[0]
        pc = transform_points(invert_transform(cam.camera2lidar), f.points)
        uv, z = project_points(pc, cam.intrinsics)
        u, v = np.round(uv[:, 0]), np.round(uv[:, 1])
        ok = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height) & (lab.point_instance > 0)
        pix = lab.image_instance["FRONT"][v[ok].astype(int), u[ok].astype(int)]
        agree = np.mean(pix == lab.point_instance[ok])
        assert ok.sum() > 1000 and agree >= 0.95, agree
        # depth map agrees with the camera-frame z of visible labelled points
        dep = sf.depth["FRONT"][v[ok].astype(int), u[ok].astype(int)]
        vis = pix == lab.point_instance[ok]
        assert np.median(np.abs(dep[vis] - z[ok][vis])) < 0.05
        seen_ids.append(set(ids))
    assert len(seen_ids[0] & seen_ids[1]) > 5  # ids persist over time
    assert set(lab.object_classes) == (set(np.unique(lab.point_instance)) | set(
        np.unique(lab.image_instance["FRONT"]))) - {0}
