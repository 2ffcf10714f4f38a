# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""End to end on the bundled sample drive: the demo (node in a subprocess, bag replayer, service + /clicked_point
prompts, real DDS), checking every output topic's stamps, frames, layouts and sizes, and the tracked objects' IoU
against the ground truth when the embedded checkpoint exists."""

import json

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
pytest.importorskip("tf2_msgs.msg")

from sam4d_ros.pipeline import embedded_checkpoint  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
# Mean LiDAR IoU every prompted object (the service LiDAR click, the service image click on a moving car and the
# /clicked_point click in odom) must exceed with the embedded sam4d_tiny and the node's default
# lidar_refine:=components: #13's target, and what it reliably reaches since the velocity-fallback seed and the
# shape merge (2026-12-07, 5 runs on 2 CPU cores, one from a fresh clone): 0.73-0.85 / 0.69-0.77 / 0.73-0.83.
# Before them the moving car scored 0.17-0.27 (the static seed stayed behind it) and the odom-clicked car
# 0.44-0.53 (split by the scan rings as it receded). The model alone (lidar_refine:=none) scored 0.06-0.16 for the
# best object.
IOU_MIN_EVERY_OBJECT = 0.5


def test_demo_on_sample_drive(tmp_path):
    from sam4d_ros.demo import run_demo

    have_ckpt = embedded_checkpoint().is_file()
    s = run_demo(tmp_path / "demo", checkpoint="" if have_ckpt else "random", device="cpu", rate=0.25)
    assert s["service_response"]["success"], s["service_response"]
    assert all(v >= 1 for v in s["ids_by_gt"].values()), s["ids_by_gt"]  # 2 service prompts + 1 click
    rec = s["received"]
    assert rec["points"] >= 3 and rec["mask"] >= 3 and rec["overlay"] >= 3 and rec["objects"] >= 3, rec
    lay = s["layout"]
    p = lay["points"]
    assert p["frame_id"] == "lidar" and p["stamp_is_input"] and p["height"] == 1
    names = [f[0] for f in p["fields"]]
    assert names[:4] == ["x", "y", "z", "intensity"] and names[-2:] == ["object_id", "score"]
    assert tuple(p["fields"][-2][1:]) == (p["point_step"] - 8, 5)
    assert tuple(p["fields"][-1][1:]) == (p["point_step"] - 4, 7)
    for name, enc in (("mask", "mono16"), ("overlay", "rgb8")):
        assert lay[name]["frame_id"] == "camera_optical" and lay[name]["encoding"] == enc
        assert (lay[name]["width"], lay[name]["height"]) == (640, 480) and lay[name]["stamp_is_input"]
    assert lay["objects"]["frame_id"] == "lidar" and lay["objects"]["stamp_is_input"]
    assert s["overlays_written"] >= 3 and (tmp_path / "demo" / "summary.json").is_file()
    # the README's screenshot: the node's overlay beside a bird's-eye view of its labelled cloud, objects coloured
    import cv2
    shot = cv2.imread(s["screenshot"])
    assert shot is not None and shot.shape[1] > 2 * shot.shape[0]
    half = shot[:, shot.shape[1] - shot.shape[0]:]
    chroma = half.astype(int).max(2) - half.astype(int).min(2)  # unlabelled points are grey, objects saturated
    assert (chroma > 80).sum() > 50
    json.loads((tmp_path / "demo" / "summary.json").read_text())
    if not have_ckpt:
        pytest.skip(f"plumbing checked; IoU not checked: embedded checkpoint {embedded_checkpoint()} is missing")
    for gid, r in s["iou"].items():  # every prompted object is tracked and scored
        assert r["lidar_iou_mean"] is not None and r["frames_lidar"] >= 1, (gid, r)
    hows = sorted("image click" if "image click" in r["how"] else "LiDAR click" if "LiDAR click" in r["how"]
                  else "odom click" for r in s["iou"].values())
    assert hows == ["LiDAR click", "image click", "odom click"], s["iou"]
    assert all(r["lidar_iou_mean"] > IOU_MIN_EVERY_OBJECT for r in s["iou"].values()), s["iou"]
