# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""One transform-lookup interface over ``tf2_ros`` (when importable) or the project's own buffer.

``make_tf(node)`` returns a :class:`TransformSource`. Both backends give 4x4 numpy matrices
``T_target_source`` (``p_target = T @ p_source``, tf2's ``lookup_transform`` convention), raise
:class:`TransformUnavailable` with a readable reason (unknown frame, not connected, extrapolation, timeout),
and can be cleared after a time jump (static transforms are kept).

The fallback subscribes to ``/tf`` and ``/tf_static`` (``tf2_msgs/TFMessage``, the same QoS as tf2_ros: reliable
depth 100 / reliable transient-local depth 100) and stores them in :class:`sam4d_model.data.tf_buffer.TFBuffer`
(time-interpolated, static edges, extrapolation errors).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from sam4d_model.data.geometry import make_transform
from sam4d_model.data.tf_buffer import TFBuffer, TFError

NS = 1_000_000_000


class TransformUnavailable(LookupError):
    """A transform could not be looked up; the message says why."""


def _stamp_ns(stamp) -> int:
    if stamp is None:
        return 0
    if isinstance(stamp, int):
        return stamp
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    return int(stamp.sec) * NS + int(stamp.nanosec)


def transform_msg_to_matrix(tf) -> np.ndarray:
    """4x4 matrix of a ``geometry_msgs/Transform``."""
    r, t = tf.rotation, tf.translation
    return make_transform(np.array([r.x, r.y, r.z, r.w], np.float64), np.array([t.x, t.y, t.z], np.float64))


class TransformSource:
    """Interface: ``lookup(target, source, stamp, timeout_s)`` -> 4x4, ``clear()``, ``backend``."""

    backend = "none"
    reason = ""  #: why make_tf chose this backend (logged by the node)

    def lookup(self, target: str, source: str, stamp=None, timeout_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` at ``stamp`` (``builtin_interfaces/Time``, rclpy Time or ns; 0/None = latest)."""
        raise NotImplementedError

    def can_transform(self, target: str, source: str, stamp=None) -> Optional[str]:
        """``None`` when the lookup would succeed now, else the reason it would not."""
        try:
            self.lookup(target, source, stamp)
            return None
        except TransformUnavailable as exc:
            return str(exc)

    def clear(self) -> None:
        """Forget dynamic transforms (after a time jump); static ones stay."""

    def close(self) -> None:
        """Release subscriptions."""


class BufferTransformSource(TransformSource):
    """Transforms fed by hand (``add_message``) into ``TFBuffer``: the core of the fallback, and offline tools."""

    backend = "sam4d_ros"

    def __init__(self, cache_time_s: float = 10.0, tolerance_s: float = 0.0, log=None):
        self._cache_ns = int(cache_time_s * NS)
        self._tol_ns = int(tolerance_s * NS)
        self._log = log
        self._cond = threading.Condition()
        self._statics = {}
        self._buf = TFBuffer(cache_time_ns=self._cache_ns, tolerance_ns=self._tol_ns)

    def add_message(self, msg, static: bool) -> None:
        """Insert every transform of a ``tf2_msgs/TFMessage``; bad transforms are skipped (and logged)."""
        with self._cond:
            for t in msg.transforms:
                try:
                    self._buf.set_transform_msg(t, static=static)
                    if static:
                        self._statics[t.child_frame_id.lstrip("/")] = t
                except ValueError as exc:
                    if self._log is not None:
                        self._log(f"ignoring transform: {exc}")
            self._cond.notify_all()

    def lookup(self, target: str, source: str, stamp=None, timeout_s: float = 0.0) -> np.ndarray:
        ns = _stamp_ns(stamp)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cond:
            while True:
                try:
                    return self._buf.lookup(target, source, ns if ns > 0 else None)
                except TFError as exc:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TransformUnavailable(str(exc)) from None
                    self._cond.wait(min(left, 0.05))

    def clear(self) -> None:
        with self._cond:
            self._buf = TFBuffer(cache_time_ns=self._cache_ns, tolerance_ns=self._tol_ns)
            for t in self._statics.values():
                self._buf.set_transform_msg(t, static=True)


class OwnTransformSource(BufferTransformSource):
    """Fallback backend: subscribes to ``/tf`` and ``/tf_static`` itself (same QoS as tf2_ros)."""

    def __init__(self, node, cache_time_s: float = 10.0, tolerance_s: float = 0.0, tf_topic: str = "/tf",
                 tf_static_topic: str = "/tf_static", callback_group=None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        logger = node.get_logger()
        super().__init__(cache_time_s, tolerance_s, log=lambda m: logger.warning(m, throttle_duration_sec=5.0))
        self._node = node
        dyn_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        static_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs = [
            node.create_subscription(TFMessage, tf_topic, lambda m: self.add_message(m, False), dyn_qos,
                                     callback_group=callback_group),
            node.create_subscription(TFMessage, tf_static_topic, lambda m: self.add_message(m, True), static_qos,
                                     callback_group=callback_group),
        ]

    def close(self) -> None:
        for s in self._subs:
            self._node.destroy_subscription(s)
        self._subs = []


class Tf2RosTransformSource(TransformSource):
    """``tf2_ros.Buffer`` + ``TransformListener`` (on a real ROS 2 install)."""

    backend = "tf2_ros"

    def __init__(self, node, cache_time_s: float = 10.0):
        import tf2_ros
        from rclpy.duration import Duration

        self._tf2 = tf2_ros
        self._buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s), node=node)
        self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False)

    def lookup(self, target: str, source: str, stamp=None, timeout_s: float = 0.0) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        t = Time(nanoseconds=_stamp_ns(stamp))
        try:
            ts = self._buffer.lookup_transform(target.lstrip("/"), source.lstrip("/"), t,
                                               timeout=Duration(seconds=max(timeout_s, 0.0)))
        except (self._tf2.LookupException, self._tf2.ConnectivityException, self._tf2.ExtrapolationException,
                self._tf2.TransformException) as exc:
            raise TransformUnavailable(f"{type(exc).__name__}: {exc}") from None
        return transform_msg_to_matrix(ts.transform)

    def clear(self) -> None:
        self._buffer.clear()

    def close(self) -> None:
        try:
            self._listener.unregister()
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass


def tf2_ros_available() -> bool:
    """Whether ``tf2_ros`` can be imported here."""
    return tf2_ros_import_error() is None


def tf2_ros_import_error() -> Optional[str]:
    """``None`` when ``tf2_ros`` imports here, else the error (e.g. a dev-only ``tf2_msgs`` hiding the real one:
    ``No module named 'tf2_msgs.srv'``).
    """
    try:
        import tf2_ros  # noqa: F401
        return None
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"


def make_tf(node, backend: str = "auto", cache_time_s: float = 10.0, callback_group=None) -> TransformSource:
    """Create the transform source: ``backend`` is ``auto`` (tf2_ros when importable), ``tf2_ros`` or ``own``."""
    if backend not in ("auto", "tf2_ros", "own"):
        raise ValueError(f"tf backend must be auto, tf2_ros or own, not {backend!r}")
    err = None if backend == "own" else tf2_ros_import_error()
    if backend == "tf2_ros" or (backend == "auto" and err is None):
        src = Tf2RosTransformSource(node, cache_time_s=cache_time_s)
        src.reason = "tf_backend tf2_ros" if backend == "tf2_ros" else "tf_backend auto: tf2_ros is importable"
        return src
    src = OwnTransformSource(node, cache_time_s=cache_time_s, callback_group=callback_group)
    src.reason = "tf_backend own" if backend == "own" else f"tf_backend auto: tf2_ros is not importable ({err})"
    return src
