# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The labelling loop (#16 item 9): prompts on any frame, forward and backward propagation, class names, and the
SemanticKITTI / nuScenes-lidarseg exports read back with the formats' own rules."""

from __future__ import annotations

import numpy as np
import pytest

from sam4d_model.data import lidarseg


def test_semantickitti_labels_round_trip_with_the_format_rule(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 4)).astype(np.float32)
    sem = rng.choice([0, 10, 30, 40], 500)
    inst = rng.integers(0, 70000 // 2, 500)
    vel, lab = lidarseg.write_semantickitti(tmp_path, "08", 3, pts, sem, inst)
    assert vel.name == "000003.bin" and lab.parent.name == "labels" and lab.parent.parent.name == "08"
    raw = np.fromfile(lab, dtype=np.uint32)  # SemanticKITTI: semantic = low 16 bits, instance = high 16 bits
    np.testing.assert_array_equal(raw & 0xFFFF, sem)
    np.testing.assert_array_equal(raw >> 16, inst)
    np.testing.assert_array_equal(np.fromfile(vel, dtype=np.float32).reshape(-1, 4), pts)
    p2, s2, i2 = lidarseg.read_semantickitti(vel, lab)
    np.testing.assert_array_equal(s2, sem) and np.testing.assert_array_equal(i2, inst)
    with pytest.raises(ValueError, match="0..65535"):
        lidarseg.pack_semantickitti(np.array([70000]), np.array([0]))


def test_nuscenes_lidarseg_round_trip(tmp_path):
    pts = np.arange(30, dtype=np.float32).reshape(-1, 3)
    cls = np.array([0, 17, 17, 23, 2, 31, 0, 9, 9, 30])
    pcd, seg = lidarseg.write_nuscenes_lidarseg(tmp_path, "scene_0001", pts, cls)
    assert seg.name == "scene_0001_lidarseg.bin" and pcd.name == "scene_0001.pcd.bin"
    np.testing.assert_array_equal(np.fromfile(seg, dtype=np.uint8), cls)  # nuScenes-lidarseg: uint8 per point
    cloud = np.fromfile(pcd, dtype=np.float32).reshape(-1, 5)  # x y z intensity ring
    np.testing.assert_array_equal(cloud[:, :3], pts)
    with pytest.raises(ValueError, match="0..31"):
        lidarseg.write_nuscenes_lidarseg(tmp_path, "bad", pts, np.full(10, 40))


def test_class_names_map_to_both_tables():
    assert lidarseg.semantic_ids("car") == (10, 17)
    assert lidarseg.semantic_ids("pedestrian") == (30, 2)
    assert lidarseg.semantic_ids("vehicle.trailer") == (99, 22)
    assert lidarseg.semantic_ids("traffic-sign") == (81, 29)
    assert lidarseg.semantic_ids(None) == (0, 0)
    with pytest.raises(ValueError, match="unknown class"):
        lidarseg.semantic_ids("spaceship")


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
    from sam4d_model.data.synth import generate_drive, sample_config
    from sam4d_ros.testing import write_frames_bag

    d = tmp_path_factory.mktemp("drive")
    drive = list(generate_drive(5, 5, config=sample_config(width=192, height=144, beams=16, azimuths=384)))
    frames, labels = [f for f, _ in drive], [lab for _, lab in drive]
    return write_frames_bag(d / "in.mcap", frames), frames, labels


def _run(tmp_path, bag, prompts, *extra):
    import yaml

    from sam4d_ros.process_bag import main as process_main
    from sam4d_ros.testing import micro_model_config

    (tmp_path / "prompts.yaml").write_text(yaml.safe_dump({"prompts": prompts}))
    cfg = micro_model_config(tmp_path / "micro.yaml", image_size=64)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"sam4d": {"ros__parameters": {"model_config": str(cfg)}}}))
    out = tmp_path / "out.mcap"
    assert process_main([str(bag), "-o", str(out), "--prompts", str(tmp_path / "prompts.yaml"), "--checkpoint",
                         "random", "--config", str(params), "--no-copy-inputs", *extra]) == 0
    return out


def _labels_per_frame(out):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2

    from sam4d_ros.bag_replay import read_bag
    from sam4d_ros.pointcloud import labels_from_cloud

    msgs = [deserialize_message(raw, PointCloud2) for t, _, _, raw in read_bag(out) if t == "/sam4d/points"]
    return [labels_from_cloud(m)[0] for m in msgs]


def test_backward_propagation_labels_the_frames_before_the_prompt(drive_bag, tmp_path):
    bag, frames, labels = drive_bag
    lab = labels[3].point_instance
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    car = ids[np.argmax(counts)]
    pts = frames[3].points[lab == car][:, :3]
    click = pts[np.argmin(np.linalg.norm(pts - pts.mean(0), axis=1))]  # the car point nearest its centroid
    prompt = [{"frame": 3, "object_id": 4, "class": "car", "modality": "lidar",
               "positive_points": [[float(v) for v in click]]}]
    (tmp_path / "f").mkdir()
    (tmp_path / "b").mkdir()
    fwd = _labels_per_frame(_run(tmp_path / "f", bag, prompt, "--direction", "forward"))
    out = _run(tmp_path / "b", bag, prompt, "--export-semantickitti", str(tmp_path / "sk"), "--export-nuscenes",
               str(tmp_path / "ns"), "--sequence", "04")
    both = _labels_per_frame(out)
    assert len(fwd) == len(both) == 5
    assert [int((x == 4).sum()) > 0 for x in fwd] == [False, False, False, True, True]
    assert all(int((x == 4).sum()) > 0 for x in both)  # frames 0-2 labelled by the backward pass
    for k in (3, 4):
        np.testing.assert_array_equal(both[k], fwd[k])  # the prompted frame and after: the forward pass's labels
    # the car's own points on a frame before the prompt: mostly labelled as object 4
    gt = labels[1].point_instance == car
    assert (both[1][gt] == 4).mean() > 0.5
    # exports: per frame, class 10 / 17 and instance 4 exactly on the points labelled 4 in the output bag
    for k in range(5):
        pts, sem, inst = lidarseg.read_semantickitti(tmp_path / "sk" / "sequences" / "04" / "velodyne" / f"{k:06d}.bin",
                                                     tmp_path / "sk" / "sequences" / "04" / "labels" / f"{k:06d}.label")
        assert len(pts) == len(both[k])
        np.testing.assert_array_equal(sem == 10, both[k] == 4)
        np.testing.assert_array_equal(inst, np.maximum(both[k], 0))
    segs = sorted((tmp_path / "ns" / "lidarseg").glob("04_*_lidarseg.bin"))
    assert len(segs) == 5
    _, cls = lidarseg.read_nuscenes_lidarseg(tmp_path / "ns" / "samples" / "LIDAR_TOP" /
                                             segs[0].name.replace("_lidarseg.bin", ".pcd.bin"), segs[0])
    np.testing.assert_array_equal(cls == 17, both[0] == 4)


def test_unknown_class_is_refused_with_the_reason(drive_bag, tmp_path, capsys):
    """A class name neither table knows stops the run with the reason (before any frame is processed)."""
    import yaml

    from sam4d_ros.process_bag import main as process_main

    bag = drive_bag[0]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"prompts": [
        {"frame": 0, "modality": "lidar", "class": "spaceship", "positive_points": [[5.0, 0.0, 0.0]]}]}))
    rc = process_main([str(bag), "-o", str(tmp_path / "o.mcap"), "--prompts", str(tmp_path / "p.yaml"),
                       "--checkpoint", "random", "--no-copy-inputs"])
    assert rc == 2 and "unknown class 'spaceship'" in capsys.readouterr().err
