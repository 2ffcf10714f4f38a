# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The real KITTI drive (converted to a bag by sam4d_model.data.kitti) replays through the node over real DDS; a click
on a LiDAR point of the car ahead is tracked. The mask-content check needs the embedded checkpoint."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
pytest.importorskip("tf2_msgs.msg")

from geometry_msgs.msg import PointStamped  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from sam4d_model.training.prompt_sim import project_points  # noqa: E402
from sam4d_ros.bag_replay import BagReplayer, bag_topics  # noqa: E402
from sam4d_ros.image import image_to_numpy  # noqa: E402
from sam4d_ros.pipeline import embedded_checkpoint  # noqa: E402
from sam4d_ros.pointcloud import labels_from_cloud, read_cloud  # noqa: E402
from sam4d_ros.srv import ListObjects  # noqa: E402
from sam4d_ros.testing import RosHarness  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_kitti_replay_and_click(kitti_dir, tmp_path):
    import torch

    from sam4d_model.data.kitti import import_kitti

    torch.set_num_threads(2)
    bag = import_kitti(kitti_dir, bag_path=tmp_path / "kitti", max_frames=6)["bag"]
    topics = bag_topics(bag)
    assert "/lidar/points" in topics and "/camera/image_raw" in topics
    have_ckpt = embedded_checkpoint().is_file()
    with RosHarness("kitti_test") as h:
        node = h.start_sam4d({"checkpoint": "" if have_ckpt else "random", "device": "cpu", "sync_max_wait": 0.3,
                              "points_reliability": "reliable", "image_reliability": "reliable"})
        out = h.collect(PointCloud2, "/sam4d/points")
        masks = h.collect(Image, "/sam4d/mask")
        p_click = h.publisher(PointStamped, "/clicked_point")
        h.wait_matched(p_click)
        first = threading.Event()
        go = threading.Event()

        def gate(topic, t, raw):
            if topic == "/lidar/points" and not first.is_set():
                first.set()
                go.wait(60)
            return raw

        rep = BagReplayer(h.node, bag, rate=0.3, filter_fn=gate,
                          topics=["/lidar/points", "/camera/image_raw", "/camera/camera_info", "/tf", "/tf_static"])
        time.sleep(1.0)
        th = threading.Thread(target=rep.run, daemon=True)
        th.start()
        assert first.wait(30)
        go.set()
        assert h.wait_for(lambda: len(out) >= 1, 60), node.status()
        cloud = read_cloud(out[0][1])
        xyz = cloud.xyz
        # the car ahead (drive 0009, frame 0: about 10-14 m ahead, 2-4 m to the right): the densest 2 m cell of
        # above-ground points 5-20 m ahead within 5 m of the lane centre, clicked at its point nearest the median
        sel = (xyz[:, 0] > 5) & (xyz[:, 0] < 20) & (np.abs(xyz[:, 1]) < 5.0) & (xyz[:, 2] > -1.3) & (xyz[:, 2] < 0.5)
        assert sel.sum() > 50, "no car ahead found in the first KITTI cloud"
        pts = xyz[sel]
        cells = np.floor(pts[:, :2] / 2.0).astype(int)
        keys, inv, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
        pts = pts[inv.ravel() == np.argmax(counts)]
        click_pt = pts[np.argmin(np.linalg.norm(pts - np.median(pts, 0), axis=1))]
        click = PointStamped()
        click.header.frame_id = out[0][1].header.frame_id
        click.point.x, click.point.y, click.point.z = (float(v) for v in click_pt)
        p_click.publish(click)
        th.join(120)
        time.sleep(2.0)
        st = node.status()
        c = st["counters"]
        assert c.get("errors", 0) == 0 and c.get("bad_cloud", 0) == 0 and c.get("bad_image", 0) == 0, st
        assert c.get("clicks", 0) == 1 and len(out) >= 2
        lst = h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request())
        assert list(lst.object_ids) == [1] and lst.frames_tracked[0] >= 1
        if not have_ckpt:
            pytest.skip("KITTI replay + click plumbing checked; mask content needs the embedded checkpoint")
        # the last labelled frame: the clicked neighbourhood is labelled, in cloud and image. The ego moves about
        # 1 m per frame, so the clicked point (static: a parked car) is carried into that cloud's LiDAR frame
        # through odom with the TF the node received.
        ids, _ = labels_from_cloud(out[-1][1])
        xyz_last = read_cloud(out[-1][1]).xyz
        lidar = out[0][1].header.frame_id
        t_odom_l0 = node.tf.lookup("odom", lidar, out[0][1].header.stamp)
        t_lk_odom = np.linalg.inv(node.tf.lookup("odom", lidar, out[-1][1].header.stamp))
        click_pt = (t_lk_odom @ t_odom_l0 @ np.append(click_pt, 1.0))[:3]
        near = np.linalg.norm(xyz_last - click_pt, axis=1) < 0.5
        assert near.any() and (ids[near] == 1).mean() > 0.5
        m = image_to_numpy(masks[-1][1])
        cm = node._camera_models[0]
        T = node.tf.lookup(click.header.frame_id, masks[-1][1].header.frame_id)  # camera -> LiDAR
        uv, ok = project_points(click_pt[None], cm.K, T, cm.width, cm.height)
        assert ok[0]
        u, v = uv[0].astype(int)
        assert (m[max(v - 5, 0):v + 6, max(u - 5, 0):u + 6] == 1).mean() > 0.5
