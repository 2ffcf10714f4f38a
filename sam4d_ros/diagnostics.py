# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Health of the SAM4D pipeline for ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``).

:class:`PipelineHealth` turns successive ``~/status`` snapshots (the dictionary of ``Sam4dNode.status()``) into a
level and a one-line message by simple rules:

* ERROR: point clouds keep arriving but no frame was processed for ``stale_timeout`` seconds (no camera image,
  no transform, worker stuck...).
* WARN: the latency p95 is above ``latency_warn`` (0 = off), or a problem counter increased since the previous
  evaluation (frames skipped because the model is slower than the input, unpaired clouds, TF failures, time
  jumps, bad inputs, processing errors).
* OK otherwise (also while no input arrives at all: that is the sensor drivers' diagnostics' business).

:func:`diagnostic_array` builds the message (rclpy types imported lazily; the rules need no ROS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
STATUS_NAME = "sam4d: pipeline"

#: status counter -> words for the message; an increase of any of them is a warning.
WATCHED_COUNTERS: Dict[str, str] = {
    "sync_skipped": "frames skipped (model slower than the input)",
    "sync_unpaired": "clouds without an image",
    "tf_unavailable": "TF failures",
    "odom_unavailable": "odom TF failures",
    "time_jumps": "time jumps",
    "bad_cloud": "bad clouds",
    "bad_image": "bad images",
    "no_camera_info": "frames without CameraInfo",
    "image_size_mismatch": "image/CameraInfo size mismatches",
    "errors": "processing errors",
    "prompts_failed": "prompts that could not be applied",
    "qos_mismatch": "input QoS mismatches with the publishers (data lost; see the log)",
    "messages_lost": "input messages lost by the middleware",
}


@dataclass
class HealthRules:
    """Thresholds (seconds) of :class:`PipelineHealth`; see config/sam4d.yaml."""

    latency_warn: float = 1.0
    stale_timeout: float = 5.0


class PipelineHealth:
    """Level and message of the pipeline from status snapshots (call :meth:`evaluate` periodically)."""

    def __init__(self, rules: HealthRules):
        self.rules = rules
        self._prev: Optional[Dict[str, int]] = None

    def evaluate(self, status: dict, now: float, first_cloud: Optional[float], last_cloud: Optional[float],
                 last_frame: Optional[float]) -> Tuple[int, str]:
        """``(level, message)``; times are monotonic seconds (``None``: never happened)."""
        counters = status.get("counters", {})
        level, reasons = OK, []
        inputs_arrive = last_cloud is not None and now - last_cloud <= self.rules.stale_timeout
        since = last_frame if last_frame is not None else first_cloud
        if inputs_arrive and since is not None and now - since > self.rules.stale_timeout:
            level = ERROR
            what = f"for {now - since:.1f} s" if last_frame is not None else "yet"
            reasons.append(f"point clouds arrive but no frame processed {what}")
            if status.get("last_error"):
                reasons.append(f"last error: {status['last_error']}")
        p95 = (status.get("latency_ms") or {}).get("p95")
        if self.rules.latency_warn > 0 and p95 is not None and p95 > self.rules.latency_warn * 1e3:
            level = max(level, WARN)
            reasons.append(f"latency p95 {p95:.0f} ms > {self.rules.latency_warn * 1e3:.0f} ms")
        if self._prev is not None:
            for key, words in WATCHED_COUNTERS.items():
                d = counters.get(key, 0) - self._prev.get(key, 0)
                if d > 0:
                    level = max(level, WARN)
                    reasons.append(f"{d} {words}")
        self._prev = {k: counters.get(k, 0) for k in WATCHED_COUNTERS}
        if not reasons:
            reasons.append("waiting for point clouds" if last_cloud is None else "running")
        return level, "; ".join(reasons)


def key_values(status: dict) -> List[Tuple[str, str]]:
    """The ``(key, value)`` pairs published with the status (numbers as text, ``nan`` when unknown)."""
    def num(v, fmt="{:.2f}"):
        return "nan" if v is None else fmt.format(v)

    c = status.get("counters", {})
    proc, lat = status.get("processing_time_ms") or {}, status.get("latency_ms") or {}
    tracker = status.get("tracker") or {}
    return [
        ("frames processed", str(status.get("frames_processed", 0))),
        ("fps", num(status.get("fps"), "{:.3f}")),
        ("processing time last (ms)", num(proc.get("last"))),
        ("processing time p50 (ms)", num(proc.get("p50"))),
        ("latency p50 (ms)", num(lat.get("p50"))),
        ("latency p95 (ms)", num(lat.get("p95"))),
        ("skipped frames", str(c.get("sync_skipped", 0))),
        ("unpaired clouds", str(c.get("sync_unpaired", 0))),
        ("TF failures", str(c.get("tf_unavailable", 0) + c.get("odom_unavailable", 0))),
        ("time jumps", str(c.get("time_jumps", 0))),
        ("errors", str(c.get("errors", 0))),
        ("tracked objects", str(len(status.get("objects", [])))),
        ("stored memories", str(tracker.get("stored_memories", "nan"))),
        ("device", str(status.get("device", ""))),
        ("last error", str(status.get("last_error", ""))),
    ]


def diagnostic_array(status: dict, level: int, message: str, hardware_id: str, stamp=None, name: str = STATUS_NAME):
    """``diagnostic_msgs/DiagnosticArray`` with one :data:`STATUS_NAME` status carrying :func:`key_values`."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    st = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id)
    st.values = [KeyValue(key=k, value=v) for k, v in key_values(status)]
    arr = DiagnosticArray(status=[st])
    if stamp is not None:
        arr.header.stamp = stamp
    return arr
