# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests, the demo and benchmarks: an rclpy harness on its own context, message builders.

``RosHarness`` owns a fresh ``rclpy`` context (domain from ``ROS_DOMAIN_ID``), a helper node and an executor
spinning in a thread; it can host the SAM4D node in-process, collect messages, publish and call services over
real DDS. ``frame_messages`` turns a :class:`sam4d_model.types.Frame` into the sensor messages a car would send.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from sam4d_model.data.geometry import split_transform
from sam4d_ros.image import numpy_to_image
from sam4d_ros.pointcloud import make_cloud

NS = 1_000_000_000


def stamp_msg(ns: int):
    """``builtin_interfaces/Time`` of integer nanoseconds."""
    from builtin_interfaces.msg import Time

    s, n = divmod(int(ns), NS)
    return Time(sec=int(s), nanosec=int(n))


def transform_stamped(parent: str, child: str, T: np.ndarray, ns: int):
    """``geometry_msgs/TransformStamped`` of a 4x4 ``T_parent_child``."""
    from geometry_msgs.msg import TransformStamped

    t, q = split_transform(T)
    m = TransformStamped()
    m.header.frame_id, m.child_frame_id = parent, child
    m.header.stamp = stamp_msg(ns)
    m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = (float(v) for v in t)
    m.transform.rotation.x, m.transform.rotation.y, m.transform.rotation.z, m.transform.rotation.w = (
        float(v) for v in q)
    return m


def tf_message(transforms):
    """``tf2_msgs/TFMessage`` of a list of TransformStamped."""
    from tf2_msgs.msg import TFMessage

    return TFMessage(transforms=list(transforms))


def camera_info_msg(K: np.ndarray, width: int, height: int, frame_id: str, ns: int):
    """A distortion-free ``sensor_msgs/CameraInfo``."""
    from sensor_msgs.msg import CameraInfo

    m = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    m.header.frame_id, m.header.stamp = frame_id, stamp_msg(ns)
    m.k = [float(v) for v in np.asarray(K, np.float64).ravel()]
    m.d = [0.0] * 5
    m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:3, :3] = K
    m.p = [float(v) for v in P.ravel()]
    return m


def frame_messages(frame, ns: int, lidar_frame: str = "lidar", camera_frame: str = "camera_optical",
                   odom_frame: str = "odom") -> Dict[str, Any]:
    """Sensor messages of one :class:`Frame`: cloud, image, camera_info, tf (odom->lidar) and tf_static."""
    from std_msgs.msg import Header

    pts = frame.points
    cols = {"x": pts[:, 0].astype(np.float32), "y": pts[:, 1].astype(np.float32), "z": pts[:, 2].astype(np.float32)}
    if pts.shape[1] > 3:
        cols["intensity"] = pts[:, 3].astype(np.float32)
    cloud = make_cloud(Header(frame_id=lidar_frame, stamp=stamp_msg(ns)), cols)
    cam = frame.cameras[0]
    image = numpy_to_image(cam.image, "rgb8", Header(frame_id=camera_frame, stamp=stamp_msg(ns)))
    info = camera_info_msg(cam.intrinsics, cam.width, cam.height, camera_frame, ns)
    tf = tf_message([transform_stamped(odom_frame, lidar_frame, frame.lidar2world, ns)])
    tf_static = tf_message([transform_stamped(lidar_frame, camera_frame, cam.camera2lidar, ns)])
    return {"cloud": cloud, "image": image, "info": info, "tf": tf, "tf_static": tf_static}


class RosHarness:
    """A private rclpy context with a helper node and an executor thread (see module docstring)."""

    def __init__(self, name: str = "sam4d_test"):
        self.context = Context()
        domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._nodes = [self.node]
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.received: Dict[str, List[Any]] = {}
        self._lock = threading.Lock()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races
            pass

    def start_sam4d(self, params: Optional[Dict[str, Any]] = None, tracker=None, name: str = "sam4d"):
        """Create the SAM4D node in this context (parameters as a dict) and spin it."""
        from sam4d_ros.node import Sam4dNode

        overrides = [Parameter(k, value=v) for k, v in (params or {}).items()]
        node = Sam4dNode(name, tracker=tracker, context=self.context, parameter_overrides=overrides)
        self.add_node(node)
        return node

    def add_node(self, node) -> None:
        self.executor.add_node(node)
        self._nodes.append(node)

    def collect(self, msg_type, topic: str, qos: Optional[QoSProfile] = None) -> List[Any]:
        """Subscribe and keep every message received on ``topic`` (returns the live list)."""
        lst = self.received.setdefault(topic, [])

        def cb(m, lst=lst):
            with self._lock:
                lst.append((time.monotonic(), m))

        self.node.create_subscription(msg_type, topic, cb, qos or QoSProfile(depth=50,
                                                                              reliability=ReliabilityPolicy.RELIABLE))
        return lst

    def publisher(self, msg_type, topic: str, reliable: bool = True, latched: bool = False, depth: int = 10):
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        """Call a service over DDS and return the response (raises TimeoutError)."""
        cli = self.node.create_client(srv_type, name)
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            fut = cli.call_async(request)
            end = time.monotonic() + timeout
            while not fut.done():
                if time.monotonic() > end:
                    raise TimeoutError(f"service {name} did not answer in {timeout} s")
                time.sleep(0.005)
            return fut.result()
        finally:
            self.node.destroy_client(cli)

    @staticmethod
    def wait_for(cond: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(period)
        return bool(cond())

    def wait_matched(self, pub, n: int = 1, timeout: float = 10.0) -> bool:
        """Wait until a publisher has ``n`` subscribers (discovery)."""
        return self.wait_for(lambda: pub.get_subscription_count() >= n, timeout)

    def close(self) -> None:
        for n in self._nodes[1:]:
            try:
                self.executor.remove_node(n)
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:  # noqa: BLE001
            pass
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def labelled_points(msg) -> Tuple[np.ndarray, np.ndarray]:
    """``(xyz, object_id)`` of a ``~/points`` message."""
    from sam4d_ros.pointcloud import labels_from_cloud, read_cloud

    return read_cloud(msg).xyz, labels_from_cloud(msg)[0]


def write_frames_bag(path, frames, t0_ns: int = 1_700_000_000 * NS, period_ns: int = 100_000_000,
                     image_delay_ns: int = 5_000_000) -> Path:
    """Write :class:`Frame` objects as a small rosbag2 (MCAP) with the sample drive's topics (tests)."""
    from sam4d_ros.process_bag import BagOutput

    out = BagOutput(Path(path))
    try:
        for k, f in enumerate(frames):
            ns = t0_ns + k * period_ns
            m = frame_messages(f, ns)
            if k == 0:
                out.write("/tf_static", "tf2_msgs/msg/TFMessage", ns - 1, m["tf_static"])
            # odom->lidar a little before and after the sweep so lookups at the stamp interpolate
            for dt in (-period_ns // 2, 0, period_ns // 2):
                tfm = frame_messages(f, ns + dt)["tf"] if dt else m["tf"]
                out.write("/tf", "tf2_msgs/msg/TFMessage", ns + dt, tfm)
            out.write("/camera/camera_info", "sensor_msgs/msg/CameraInfo", ns, m["info"])
            m["image"].header.stamp = stamp_msg(ns + image_delay_ns)
            out.write("/camera/image_raw", "sensor_msgs/msg/Image", ns + image_delay_ns, m["image"])
            out.write("/lidar/points", "sensor_msgs/msg/PointCloud2", ns + 1_000_000, m["cloud"])
    finally:
        return out.close()
