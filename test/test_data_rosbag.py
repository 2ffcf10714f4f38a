# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""rosbag2 I/O: message helpers, bag conventions, layout -> bag -> layout round trips, CLIs."""

import json

import numpy as np
import pytest

from sam4d_model.data import rosbag_io as rb
from sam4d_model.data.convert import export_layout_to_bag, import_bag_to_layout
from sam4d_model.data.synth import SynthConfig, SynthDrive, write_bag, write_layout
from sam4d_model.data.waymo4dseg import read_sequence

SMALL = SynthConfig(width=160, height=120, beams=16, azimuths=256)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("bagio")
    drive = SynthDrive(21, 5, SMALL)
    write_layout(drive, root, "s", image_format="png")
    return root, drive


def test_pointcloud2_helpers():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 6)).astype(np.float32)
    pts[:, 4] = rng.integers(0, 64, 50)
    msg = rb.points_to_pointcloud2(pts, 123, "lidar", ["x", "y", "z", "intensity", "ring", "time"])
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity", "ring", "time"]
    assert [f.datatype for f in msg.fields] == [7, 7, 7, 7, 4, 7]
    raw = rb.get_typestore().serialize_cdr(msg, msg.__msgtype__)
    back, names = rb.pointcloud2_to_points(rb.get_typestore().deserialize_cdr(raw, msg.__msgtype__))
    assert names == ("x", "y", "z", "intensity", "ring", "time") and np.array_equal(back, pts)
    # padded, organised, big-endian clouds (e.g. from other drivers) decode too
    ts = rb.get_typestore()
    pf = ts.types["sensor_msgs/msg/PointField"]
    dt = np.dtype({"names": ["x", "y", "z", "t"], "formats": [">f4", ">f4", ">f4", ">u4"], "offsets": [0, 4, 8, 16],
                   "itemsize": 24})
    arr = np.zeros(6, dt)
    arr["x"], arr["t"] = np.arange(6), np.arange(6) * 1000
    row = 3 * 24 + 8
    data = np.zeros(2 * row, np.uint8)
    for r in range(2):
        data[r * row: r * row + 72] = np.frombuffer(arr[r * 3:(r + 1) * 3].tobytes(), np.uint8)
    m = ts.types["sensor_msgs/msg/PointCloud2"](
        header=rb.make_header(0, "os"), height=2, width=3,
        fields=[pf(name=n, offset=o, datatype=d, count=1) for n, o, d in (("x", 0, 7), ("y", 4, 7), ("z", 8, 7),
                                                                           ("t", 16, 6))],
        is_bigendian=True, point_step=24, row_step=row, data=data, is_dense=True)
    p, names = rb.pointcloud2_to_points(m)
    assert names == ("x", "y", "z", "t") and p[:, 0].tolist() == list(range(6)) and p[5, 3] == 5000


def test_image_and_camera_info_helpers():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert np.array_equal(rb.image_from_msg(rb.image_to_msg(img, 5, "cam")), img)
    bgr = rb.image_to_msg(np.ascontiguousarray(img[..., ::-1]), 5, "cam", encoding="bgr8")
    assert np.array_equal(rb.image_from_msg(bgr), img)
    inst = rng.integers(-1, 100, (7, 9)).astype(np.int32)
    m = rb.image_to_msg(inst, 5, "cam")
    assert m.encoding == "32SC1" and np.array_equal(rb.image_from_msg(m, rgb=False), inst)
    # rows padded to a larger step
    ts = rb.get_typestore()
    padded = np.zeros((7, 32), np.uint8)
    padded[:, :27] = img.reshape(7, 27)
    pm = ts.types["sensor_msgs/msg/Image"](header=rb.make_header(0, "c"), height=7, width=9, encoding="rgb8",
                                           is_bigendian=0, step=32, data=padded.reshape(-1))
    assert np.array_equal(rb.image_from_msg(pm), img)
    k = np.array([[500.0, 0, 320], [0, 505, 240], [0, 0, 1]])
    ci = rb.camera_info_from_msg(rb.camera_info_to_msg(k, 640, 480, 7, "cam"))
    assert np.array_equal(ci.intrinsics, k) and ci.width == 640 and ci.model == "plumb_bob"
    assert np.array_equal(ci.projection[:, :3], k) and not ci.distortion.any()


def test_bag_conventions(tmp_path, layout):
    _, drive = layout
    bag = write_bag(drive, tmp_path / "synth", tf_jitter_ms=0.2, camera_jitter_ms=1.0, seed=3)
    assert (bag / "synth.mcap").exists()
    info = rb.bag_info(bag)
    t = info["topics"]
    assert t["/lidar/points"] == {"type": "sensor_msgs/msg/PointCloud2", "count": 5}
    assert t["/camera/image_raw"]["type"] == "sensor_msgs/msg/Image"
    assert t["/camera/camera_info"]["type"] == "sensor_msgs/msg/CameraInfo"
    assert t["/tf"]["type"] == "tf2_msgs/msg/TFMessage" and 45 <= t["/tf"]["count"] <= 55
    assert t["/tf_static"]["count"] == 1 and t["/ground_truth/objects"]["count"] == 1
    assert t["/ground_truth/points"]["count"] == 5 and t["/ground_truth/image_instance"]["count"] == 5
    meta_yaml = (bag / "metadata.yaml").read_text()
    assert "transient_local" in meta_yaml
    from rosbags.rosbag2 import Reader

    ts = rb.get_typestore()
    stamps = {}
    with Reader(bag) as r:
        for c, logt, raw in r.messages():
            m = ts.deserialize_cdr(raw, c.msgtype)
            if c.topic == "/tf_static":
                assert {(x.header.frame_id, x.child_frame_id) for x in m.transforms} == {
                    ("base_link", "lidar"), ("base_link", "camera_optical")}
                continue
            if c.topic == "/ground_truth/objects":
                objs = json.loads(m.data)
                assert objs and all(v in ("car", "truck", "pedestrian", "cyclist", "pole", "tree", "traffic_cone",
                                          "building") for v in objs.values())
                continue
            h = m.transforms[0].header if c.topic == "/tf" else m.header
            assert rb.stamp_to_ns(h.stamp) == logt  # log time = header stamp
            stamps.setdefault(c.topic, []).append(logt)
            if c.topic == "/lidar/points":
                assert h.frame_id == "lidar"
                assert [f.name for f in m.fields] == ["x", "y", "z", "intensity", "ring", "time"]
            if c.topic == "/camera/image_raw":
                assert h.frame_id == "camera_optical" and m.encoding == "rgb8"
            if c.topic == "/ground_truth/points":
                assert [f.name for f in m.fields] == ["x", "y", "z", "instance", "class"]
            if c.topic == "/tf":
                assert (m.transforms[0].header.frame_id, m.transforms[0].child_frame_id) == ("odom", "base_link")
    lid, cam = np.array(stamps["/lidar/points"]), np.array(stamps["/camera/image_raw"])
    assert np.all(np.abs(np.diff(lid) - 100_000_000) < 1000)
    off = (cam - lid) * 1e-6
    assert np.all((off > 6.9) & (off < 9.1)) and np.ptp(off) > 0  # +8 ms with jitter
    dtf = np.diff(stamps["/tf"]) * 1e-6
    assert np.all(dtf > 9.0) and np.all(dtf < 11.0)  # ~100 Hz
    # the TF in the bag reproduces the drive's exact poses at the sweep stamps (and near them in between)
    tf = rb.load_tf(bag)
    for i in range(5):
        assert np.allclose(tf.lookup("odom", "lidar", drive.stamp_ns(i)), drive.lidar2world(drive.time_of(i)),
                           atol=1e-9)
    assert np.allclose(tf.lookup("lidar", "camera_optical", drive.stamp_ns(1)), drive.config.camera2lidar, atol=1e-12)


def test_layout_bag_layout_roundtrip(tmp_path, layout):
    root, _ = layout
    for storage in ("mcap", "sqlite3"):
        bag = export_layout_to_bag(root, "s", tmp_path / f"b_{storage}", storage=storage)
        out = tmp_path / f"out_{storage}"
        import_bag_to_layout(bag, out, "s2")
        a, b = read_sequence(root, "s"), read_sequence(out, "s2")
        assert len(a) == len(b) == 5 and b.point_fields == a.point_fields
        for i in range(len(a)):
            fa, fb = a.frame(i), b.frame(i)
            la, lb = a.labels(i), b.labels(i)
            assert np.array_equal(fa.points, fb.points)
            assert np.array_equal(fa.cameras[0].image, fb.cameras[0].image)
            assert np.abs(fa.lidar2world - fb.lidar2world).max() < 1e-6
            assert np.abs(fa.cameras[0].camera2lidar - fb.cameras[0].camera2lidar).max() < 1e-6
            assert np.array_equal(fa.cameras[0].intrinsics, fb.cameras[0].intrinsics)
            assert fa.timestamp == fb.timestamp
            assert np.array_equal(la.point_instance, lb.point_instance)
            assert np.array_equal(la.image_instance["FRONT"], lb.image_instance["FRONT"])
            assert la.object_classes == lb.object_classes
        assert np.allclose(b.meta["base2lidar"], a.meta["base2lidar"], atol=1e-9)


def test_dropped_frames_and_custom_topics(tmp_path, layout):
    root, _ = layout
    cams = {"FRONT": rb.CameraTopics("/cam/front/image", "/cam/front/info", "front_cam", "/gt/front")}
    bag = export_layout_to_bag(root, "s", tmp_path / "drop", camera_drop_prob=0.5, seed=1, lidar_topic="/velo",
                               camera_topics=cams, camera_jitter_ms=3.0)
    n_img = rb.bag_info(bag)["topics"]["/cam/front/image"]["count"]
    assert 0 < n_img < 5
    stats = {}
    # explicit topic options (as a user bag without our metadata would need); dropped images are skipped
    got = list(rb.read_bag_frames(bag, lidar_topic="/velo", camera_topics={"FRONT": ("/cam/front/image",
                                                                                       "/cam/front/info", "/gt/front")},
                                  gt_points_topic="/ground_truth/points", max_dt=0.02, stats=stats))
    assert len(got) == n_img == stats["yielded"] and stats["skipped_no_camera"] == 5 - n_img
    a = read_sequence(root, "s")
    for f, lab, st in got:
        i = int(np.argmin(np.abs(a.timestamps - f.timestamp)))
        assert np.array_equal(f.points, a.frame(i).points)
        assert 5e6 <= st["cameras"]["FRONT"] - st["lidar"] <= 11e6
        assert np.array_equal(lab.image_instance["FRONT"], a.labels(i).image_instance["FRONT"])
    # keep sweeps without images when asked
    assert len(list(rb.read_bag_frames(bag, require_cameras=False))) == 5


def test_cli_help_and_roundtrip(tmp_path, layout, capsys):
    from sam4d_model.tools import bagtools, kitti, synth

    for fn in (synth.main, kitti.main, bagtools.export_main, bagtools.import_main):
        with pytest.raises(SystemExit) as e:
            fn(["--help"])
        assert e.value.code == 0
    root, _ = layout
    assert bagtools.export_main([str(root), "s", str(tmp_path / "cli_bag"), "--no-progress"]) == 0
    assert bagtools.export_main([str(root), "s", str(tmp_path / "cli_bag"), "--no-progress"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert bagtools.import_main([str(tmp_path / "cli_bag"), str(tmp_path / "cli_out"), "--seq", "z",
                                 "--no-progress"]) == 0
    assert len(read_sequence(tmp_path / "cli_out", "z")) == 5
    assert bagtools.import_main([str(tmp_path / "missing_bag"), str(tmp_path / "o2"), "--no-progress"]) == 2
    assert synth.main(["--out", str(tmp_path / "syn"), "--seed", "1", "--frames", "2", "--width", "64", "--height",
                       "48", "--beams", "8", "--azimuths", "64", "--bag", "--no-progress"]) == 0
    assert len(read_sequence(tmp_path / "syn", "synth_000001")) == 2
    assert (tmp_path / "syn" / "bags" / "synth_000001" / "metadata.yaml").exists()
