# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests, the demo and benchmarks: an rclpy harness on its own context, message builders.

``RosHarness`` owns a fresh ``rclpy`` context (domain from ``ROS_DOMAIN_ID``), a helper node and an executor
spinning in a thread; it can host the SAM4D node in-process, collect messages, publish and call services over
real DDS. ``frame_messages`` turns a :class:`sam4d_model.types.Frame` into the sensor messages a car would send.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


#: Centres of the two point clusters of :func:`tiny_frame` (LiDAR frame, metres).
TINY_CLUSTER_CENTRES = np.array([[6.5, -1.0, 0.5], [8.5, 1.5, 0.5]])


def tiny_frame(num_points: int = 2000, width: int = 64, height: int = 48, seed: int = 0, index: int = 0):
    """A small synthetic :class:`Frame` for soak tests and quick checks: two compact 1 m point clusters.

    The clusters sit 6-9 m in front of the car (the camera looks along +x), so the model sees few voxels and the
    image is tiny: a frame costs tens of milliseconds on one CPU core. Cluster centres are at
    :data:`TINY_CLUSTER_CENTRES` (prompt there).
    """
    from sam4d_model.types import CameraFrame, Frame

    rng = np.random.default_rng(seed)
    half = num_points // 2
    xyz = np.concatenate([rng.uniform(-0.5, 0.5, (half, 3)) + TINY_CLUSTER_CENTRES[0],
                          rng.uniform(-0.5, 0.5, (num_points - half, 3)) + TINY_CLUSTER_CENTRES[1]])
    pts = np.concatenate([xyz, rng.uniform(0, 1, (num_points, 1))], 1).astype(np.float32)
    f = 0.8 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)
    cam2lidar = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)  # optical -> x fwd
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Frame(points=pts, cameras=[CameraFrame(name="camera", image=img, intrinsics=K, camera2lidar=cam2lidar)],
                 index=index)


def micro_model_config(path, image_size: int = 64, base: str = "sam4d_tiny") -> Path:
    """Write a copy of the ``base`` model config with a smaller image size (for ``checkpoint:=random`` tests)."""
    import yaml

    from sam4d_model.config import CONFIG_DIR

    data = yaml.safe_load((CONFIG_DIR / f"{base}.yaml").read_text())
    data["name"] = f"{base}_micro{image_size}"
    data["image"]["image_size"] = int(image_size)
    path = Path(path)
    path.write_text(yaml.safe_dump(data))
    return path


def node_process(params: Dict[str, Any], log_path, remaps: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start the node as its own process (``python -m sam4d_ros.node``) with ``-p name:=value`` parameters and
    ``-r from:=to`` remappings.

    Output goes to ``log_path``; this checkout comes first on ``PYTHONPATH``. Stop it with :func:`stop_process`.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "sam4d_ros.node", "--ros-args"]
    for k, v in params.items():
        text = ("true" if v else "false") if isinstance(v, bool) else (str(v) if v != "" else "''")
        cmd += ["-p", f"{k}:={text}"]
    for a, b in (remaps or {}).items():
        cmd += ["-r", f"{a}:={b}"]
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_process(proc, timeout: float = 10.0) -> None:
    """Terminate a process started by :func:`node_process`; kill it if it does not exit in ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


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


class SensorPublishers:
    """Publishers for the node's default input topics on a :class:`RosHarness` (tests, soak, benchmarks)."""

    def __init__(self, harness: RosHarness, timeout: float = 10.0):
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        h = harness
        self.cloud = h.publisher(PointCloud2, "/lidar/points", depth=5)
        self.image = h.publisher(Image, "/camera/image_raw", depth=5)
        self.info = h.publisher(CameraInfo, "/camera/camera_info")
        self.tf = h.publisher(TFMessage, "/tf", depth=100)
        self.tf_static = h.publisher(TFMessage, "/tf_static", latched=True, depth=10)
        for pub in (self.cloud, self.image, self.info, self.tf, self.tf_static):
            if not h.wait_matched(pub, timeout=timeout):
                raise TimeoutError(f"nobody subscribed to {pub.topic_name} within {timeout} s")
        self._static_sent = False

    def send(self, messages: Dict[str, Any], image: bool = True) -> None:
        """Publish the messages of :func:`frame_messages`: static TF once, then TF, CameraInfo, image, cloud."""
        if not self._static_sent:
            self.tf_static.publish(messages["tf_static"])
            self._static_sent = True
        self.tf.publish(messages["tf"])
        self.info.publish(messages["info"])
        if image:
            self.image.publish(messages["image"])
        self.cloud.publish(messages["cloud"])


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
    except BaseException:
        out.close()
        raise
    return out.close()
