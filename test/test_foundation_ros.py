# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Foundation: real rclpy over DDS with standard and our own generated interfaces."""

import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def ctx():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    yield context
    rclpy.shutdown(context=context)


def _spin_until(executor, pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        executor.spin_once(timeout_sec=0.05)
    return pred()


def test_pointcloud2_round_trip_over_dds(ctx):
    pts = np.random.default_rng(0).normal(size=(5000, 4)).astype(np.float32)
    msg = PointCloud2()
    msg.header.frame_id = "lidar"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.height, msg.width = 1, pts.shape[0]
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate("x y z intensity".split())]
    msg.is_bigendian, msg.point_step, msg.row_step, msg.is_dense = False, 16, 16 * pts.shape[0], True
    msg.data = pts.tobytes()

    pub_node = rclpy.create_node("cloud_pub", context=ctx)
    sub_node = rclpy.create_node("cloud_sub", context=ctx)
    got = []
    sub_node.create_subscription(PointCloud2, "/lidar/points", got.append, qos_profile_sensor_data)
    pub = pub_node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(pub_node)
    ex.add_node(sub_node)

    def publish_until_received():
        # Best-effort discovery: keep publishing until the subscriber sees one.
        end = time.monotonic() + 10
        while not got and time.monotonic() < end:
            pub.publish(msg)
            time.sleep(0.1)

    t = threading.Thread(target=publish_until_received)
    t.start()
    assert _spin_until(ex, lambda: bool(got), timeout=15), "no PointCloud2 received over DDS"
    t.join()
    rx = got[0]
    assert rx.header.frame_id == "lidar" and rx.header.stamp.sec == 1234 and rx.header.stamp.nanosec == 5678
    assert rx.width == 5000 and [f.name for f in rx.fields] == ["x", "y", "z", "intensity"]
    np.testing.assert_array_equal(np.frombuffer(bytes(rx.data), np.float32).reshape(-1, 4), pts)
    ex.shutdown()


def test_own_service_type_over_dds(ctx):
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt
    from sam4d_ros.srv import AddPrompts

    server = rclpy.create_node("prompt_server", context=ctx)
    client_node = rclpy.create_node("prompt_client", context=ctx)

    def handle(req, resp):
        for p in req.prompts:
            ok = p.modality in (Prompt.MODALITY_IMAGE, Prompt.MODALITY_LIDAR) and len(p.positive_points) > 0
            resp.accepted.append(ok)
            resp.object_ids.append(p.object_id if ok else -1)
            resp.reasons.append("" if ok else "no positive point")
        resp.success = all(resp.accepted)
        return resp

    server.create_service(AddPrompts, "~/add_prompts", handle)
    cli = client_node.create_client(AddPrompts, "/prompt_server/add_prompts")
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(server)
    ex.add_node(client_node)
    assert _spin_until(ex, lambda: cli.service_is_ready(), timeout=10)
    req = AddPrompts.Request()
    req.prompts = [Prompt(object_id=3, modality=Prompt.MODALITY_LIDAR, positive_points=[Point(x=1.0, y=2.0, z=0.5)]),
                   Prompt(object_id=4, modality=Prompt.MODALITY_IMAGE)]
    fut = cli.call_async(req)
    assert _spin_until(ex, fut.done, timeout=10)
    resp = fut.result()
    assert list(resp.accepted) == [True, False]
    assert list(resp.object_ids) == [3, -1]
    assert resp.reasons[1] == "no positive point" and not resp.success
    ex.shutdown()


def test_tf_message_type_available():
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    m = TFMessage(transforms=[TransformStamped()])
    assert len(m.transforms) == 1
