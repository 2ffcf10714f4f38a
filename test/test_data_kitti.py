# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""KITTI raw import on the real drive in ../shared/realdata (skipped when absent)."""

import numpy as np

from sam4d_model.data import rosbag_io as rb
from sam4d_model.data.geometry import project_points, transform_points
from sam4d_model.data.kitti import KittiRawDrive, import_kitti
from sam4d_model.data.waymo4dseg import read_sequence


def test_kitti_to_layout_and_bag(kitti_dir, tmp_path):
    out = import_kitti(kitti_dir, out_root=tmp_path / "layout", bag_path=tmp_path / "bag", max_frames=3)
    drive = KittiRawDrive(kitti_dir)
    assert len(drive) == 20
    seq = read_sequence(tmp_path / "layout", out["layout"].stem)
    assert len(seq) == 3
    f0 = seq.frame(0)
    assert f0.points.shape[1] == 6 and 110_000 < f0.num_points < 125_000
    assert f0.cameras[0].image.shape == (375, 1242, 3)
    assert np.array_equal(f0.points[:, :4], np.fromfile(
        drive.drive_dir / "velodyne_points" / "data" / "0000000000.bin", np.float32).reshape(-1, 4))
    rings = f0.points[:, 4]
    assert rings.min() == 0 and rings.max() == 63
    # ~1 m per frame at ~10.7 m/s
    step = np.linalg.norm(seq.frame(1).lidar2world[:3, 3] - f0.lidar2world[:3, 3])
    assert 0.9 < step < 1.3

    # replay the bag: project frame 0's points with the bag's own CameraInfo and TF
    ts = rb.get_typestore()
    from rosbags.rosbag2 import Reader

    tf = rb.load_tf(out["bag"])
    cloud = info = image = None
    with Reader(out["bag"]) as r:
        for c, _, raw in r.messages():
            m = ts.deserialize_cdr(raw, c.msgtype)
            if c.topic == "/lidar/points" and cloud is None:
                cloud = m
            elif c.topic == "/camera/camera_info" and info is None:
                info = rb.camera_info_from_msg(m)
            elif c.topic == "/camera/image_raw" and image is None:
                image = m
    pts, _ = rb.pointcloud2_to_points(cloud)
    t_img = rb.stamp_to_ns(image.header.stamp)
    assert 0 < t_img - rb.stamp_to_ns(cloud.header.stamp) < 20_000_000
    cam_from_lidar = tf.lookup(image.header.frame_id, cloud.header.frame_id, t_img)
    uv, z = project_points(transform_points(cam_from_lidar, pts), info.intrinsics)
    inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < info.width - 0.5) & (uv[:, 1] >= -0.5) & (
        uv[:, 1] < info.height - 0.5)
    assert abs(int(inside.sum()) - 16_800) < 300, inside.sum()
    # the odom pose from TF matches the layout pose
    assert np.allclose(tf.lookup("odom", "lidar", rb.stamp_to_ns(cloud.header.stamp)), f0.lidar2world, atol=1e-6)
