# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The SAM4D rclpy node: camera + LiDAR in, labelled clouds, masks, overlays, objects and markers out.

Threads: the executor runs subscriptions, services, clicks and timers (all quick); one worker thread takes the
newest synchronised cloud/image pair, applies the prompts that are due and runs the tracker. Service callbacks
never wait for inference: they validate, answer and queue commands that the worker applies before the next frame.

Run: ``ros2 run sam4d_ros sam4d_node --ros-args --params-file config/sam4d.yaml -p checkpoint:=random``
(or ``python -m sam4d_ros.node --ros-args ...``). Every parameter is documented in ``config/sam4d.yaml``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections import deque
from typing import Dict, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from sam4d_ros import outputs
from sam4d_ros.diagnostics import HealthRules, PipelineHealth, diagnostic_array
from sam4d_ros.image import ImageError, Rectifier, camera_model
from sam4d_ros.pipeline import (
    FrameDropped,
    Pipeline,
    PipelineConfig,
    build_tracker,
    load_model,
    prepare_frame,
    resolve_device,
)
from sam4d_ros.prompts import (
    CommandQueue,
    ObjectRegistry,
    PromptCommand,
    PromptContext,
    RemoveCommand,
    ResetCommand,
    UndoCommand,
    validate_prompt,
)
from sam4d_ros.qos import RELIABILITY_CHOICES, SensorSubscription
from sam4d_ros.sync import LidarDrivenSync
from sam4d_ros.tf import TransformUnavailable, make_tf

NS = 1_000_000_000

# name -> (default, description, extra descriptor kwargs). Kept in sync with config/sam4d.yaml (a test checks).
PARAMETERS = {
    "checkpoint": ("", "Model checkpoint (.safetensors/.pt). '' = embedded sam4d_tiny; 'random' = random init "
                       "(tests/dev only).", {}),
    "model_config": ("", "Model config name or YAML for checkpoint:=random ('' = sam4d_tiny).", {}),
    "device": ("auto", "Inference device: auto, cpu, cuda or cuda:N.", {}),
    "torch_threads": (0, "torch.set_num_threads on CPU (0 = torch default).", {"integer_range": (0, 256)}),
    "max_objects": (16, "Most objects tracked at once; prompts for more are rejected.", {"integer_range": (1, 256)}),
    "max_prompted_frames": (4, "Prompted frames kept in the memory bank per object.", {"integer_range": (1, 64)}),
    "num_past_frames": (6, "Recent frames kept in the memory bank.", {"integer_range": (1, 64)}),
    "use_ego_motion": (True, "Use the LiDAR pose in odom_frame (TF) for motion-compensated memory (MCMA).", {}),
    "lidar_refine": ("components", "Geometric prior on the model's LiDAR masks: components (the clicked point's "
                                   "connected component, the nearby components the mask covers and its ground "
                                   "points next to them; later frames re-click the carried seed) or none (the "
                                   "model's masks as they are).", {}),
    "image_from_lidar": (True, "Image masks from the LiDAR masks (hull of their visible projected points) "
                               "instead of the model's image branch (false: the model's image masks).", {}),
    "odom_frame": ("odom", "Fixed frame (odom/map) for ego-motion.", {}),
    "cameras": (["camera"], "Camera names, one per image topic (the first is the default for image prompts).", {}),
    "image_topics": (["/camera/image_raw"], "Image topic per camera (raw sensor_msgs/Image).", {}),
    "camera_info_topics": (["/camera/camera_info"], "CameraInfo topic per camera.", {}),
    "image_transport": ("raw", "raw: sensor_msgs/Image on the image topic; compressed: sensor_msgs/CompressedImage "
                               "on <image topic>/compressed.", {}),
    "points_topic": ("/lidar/points", "LiDAR sensor_msgs/PointCloud2 topic.", {}),
    "points_reliability": ("auto", "QoS reliability of the cloud subscription: auto (reliable when every publisher "
                           "is reliable, else best_effort; re-checked every second), reliable or best_effort.", {}),
    "image_reliability": ("auto", "QoS reliability of the image subscriptions (auto, reliable, best_effort).", {}),
    "camera_info_reliability": ("auto", "QoS reliability of the CameraInfo subscriptions (auto, reliable, "
                                "best_effort).", {}),
    "qos_depth": (2, "History depth of the sensor subscriptions.", {"integer_range": (1, 100)}),
    "sync_tolerance": (0.05, "Max |image stamp - cloud stamp| in seconds for a pair.",
                       {"floating_point_range": (0.0, 10.0)}),
    "sync_max_wait": (0.1, "Wall seconds a cloud waits for a possibly closer later image.",
                      {"floating_point_range": (0.0, 10.0)}),
    "queue_size": (1, "Synchronised frames waiting for the worker (1-2); older ones are skipped.",
                   {"integer_range": (1, 2)}),
    "tf_backend": ("auto", "auto (tf2_ros when importable), tf2_ros or own (subscribe to /tf, /tf_static).", {}),
    "tf_timeout": (0.05, "Seconds the worker waits for a transform.", {"floating_point_range": (0.0, 5.0)}),
    "tf_cache_time": (10.0, "Seconds of dynamic transforms kept.", {"floating_point_range": (1.0, 600.0)}),
    "time_jump_threshold": (1.0, "A backward jump of cloud stamps or of the ROS clock larger than this (s) resets "
                                 "tracking, sync and the TF buffer (bag loops).",
                            {"floating_point_range": (0.0, 3600.0)}),
    "click_topic": ("/clicked_point", "RViz 'Publish Point' topic (geometry_msgs/PointStamped): positive clicks.", {}),
    "negative_click_topic": ("/clicked_point_negative", "Negative clicks for the selected object.", {}),
    "click_mode": ("new", "new: each positive click starts a new object; refine: it adds to the selected object.",
                   {}),
    "click_project_to_image": (True, "Also use a click's projection into the image as an image point prompt.", {}),
    "prompt_history": (20, "Processed frames kept (LiDAR points and pose) for image prompts that name a passed frame "
                           "(skipped, or processed before the prompt came): each click is carried over as the LiDAR "
                           "point it lands on in the kept frame nearest the named one, moved by ego motion; a click "
                           "on no point is refused with the reason (0: refused always).",
                       {"integer_range": (0, 1000)}),
    "object_lost_frames": (3, "An object is reported lost (~/object_events) after this many consecutive frames "
                              "with an empty mask.", {"integer_range": (1, 1000)}),
    "object_found_frames": (2, "A lost object is reported reappeared after this many consecutive frames with it.",
                            {"integer_range": (1, 1000)}),
    "max_points": (300000, "Clouds with more usable points are subsampled (stride) for the model; the others "
                           "get object_id -1.", {"integer_range": (1000, 100_000_000)}),
    "min_range": (0.0, "Ignore points closer than this (m, 0 = off).", {"floating_point_range": (0.0, 1000.0)}),
    "max_range": (0.0, "Ignore points farther than this (m, 0 = off).", {"floating_point_range": (0.0, 10000.0)}),
    "rectify": (True, "Undistort images whose CameraInfo has distortion before inference.", {}),
    "output_only_segmented": (False, "~/points carries only the points of objects instead of the full cloud.", {}),
    "mask_encoding": ("mono16", "Encoding of ~/mask: mono16 or 32SC1 (pixel = object id, 0 = none).", {}),
    "status_period": (1.0, "Seconds between ~/status messages.", {"floating_point_range": (0.05, 3600.0)}),
    "log_period": (10.0, "Seconds between status lines in the log (0 = never).",
                   {"floating_point_range": (0.0, 3600.0)}),
    "diagnostics_period": (1.0, "Seconds between diagnostic_msgs/DiagnosticArray messages on /diagnostics "
                                "(status 'sam4d: pipeline').", {"floating_point_range": (0.05, 3600.0)}),
    "diagnostics_latency_warn": (1.0, "Diagnostics WARN when the latency (stamp -> outputs published) p95 exceeds "
                                      "this (s, 0 = off).", {"floating_point_range": (0.0, 3600.0)}),
    "diagnostics_stale_timeout": (5.0, "Diagnostics ERROR when point clouds arrive but no frame was processed for "
                                       "this long (s).", {"floating_point_range": (0.1, 3600.0)}),
}

CHOICES = {
    "image_transport": ("raw", "compressed"),
    "points_reliability": RELIABILITY_CHOICES,
    "image_reliability": RELIABILITY_CHOICES,
    "camera_info_reliability": RELIABILITY_CHOICES,
    "tf_backend": ("auto", "tf2_ros", "own"),
    "lidar_refine": ("none", "components"),
    "click_mode": ("new", "refine"),
    "mask_encoding": ("mono16", "32SC1"),
}


def _descriptor(name: str, default, desc: str, extra: dict) -> ParameterDescriptor:
    d = ParameterDescriptor(description=desc, read_only=True)
    if name in CHOICES:
        d.additional_constraints = "one of: " + ", ".join(CHOICES[name])
    if "integer_range" in extra:
        lo, hi = extra["integer_range"]
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    if "floating_point_range" in extra:
        lo, hi = extra["floating_point_range"]
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def _ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


class Stats:
    """Rolling timing statistics and counters for the status topic."""

    def __init__(self, window: int = 200):
        self.proc = deque(maxlen=window)
        self.latency = deque(maxlen=window)
        self.latency_recv = deque(maxlen=window)
        self.publish_times = deque(maxlen=window)
        self.counters: Dict[str, int] = {}
        self.frames = 0
        self.last_error = ""
        self.lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    @staticmethod
    def _pct(values, q) -> float:
        return float(np.percentile(np.asarray(values), q)) if values else float("nan")

    def summary(self) -> dict:
        with self.lock:
            now = time.monotonic()
            recent = [t for t in self.publish_times if now - t < 10.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            return {
                "frames_processed": self.frames,
                "fps": round(fps, 3),
                "processing_time_ms": {"last": round(self.proc[-1] * 1e3, 2) if self.proc else None,
                                       "p50": round(self._pct(self.proc, 50) * 1e3, 2) if self.proc else None},
                "latency_ms": {"last": round(self.latency[-1] * 1e3, 2) if self.latency else None,
                               "p50": round(self._pct(self.latency, 50) * 1e3, 2) if self.latency else None,
                               "p95": round(self._pct(self.latency, 95) * 1e3, 2) if self.latency else None},
                "receive_to_publish_ms": {"p50": round(self._pct(self.latency_recv, 50) * 1e3, 2)
                                          if self.latency_recv else None},
                "counters": dict(self.counters),
                "last_error": self.last_error,
            }


class Sam4dNode(Node):
    """SAM4D segmentation and tracking node (see module docstring and config/sam4d.yaml)."""

    def __init__(self, node_name: str = "sam4d", tracker=None, **kwargs):
        super().__init__(node_name, **kwargs)
        for name, (default, desc, extra) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(name, default, desc, extra))
        self.p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._validate_parameters()
        p = self.p
        self.log = self.get_logger()
        self.stats = Stats()
        self.registry = ObjectRegistry(p["max_objects"])
        self.commands = CommandQueue()
        self._selected: Optional[int] = None
        self._camera_models: List = [None] * len(p["cameras"])
        self._rectifiers = [Rectifier() for _ in p["cameras"]]
        self._latest_cloud_frame: Optional[str] = None
        self._latest_cloud_ns: Optional[int] = None
        self._last_clock_ns: Optional[int] = None
        self._last_pose: Optional[np.ndarray] = None
        self._state_lock = threading.Lock()
        # monotonic times for the diagnostics: first/last cloud received, last frame processed
        self._first_cloud_wall: Optional[float] = None
        self._last_cloud_wall: Optional[float] = None
        self._last_frame_wall: Optional[float] = None
        self.health = PipelineHealth(HealthRules(latency_warn=p["diagnostics_latency_warn"],
                                                 stale_timeout=p["diagnostics_stale_timeout"]))

        # model
        if tracker is None:
            device = resolve_device(p["device"])
            if device == "cpu" and p["torch_threads"] > 0:
                import torch

                torch.set_num_threads(p["torch_threads"])
            t0 = time.perf_counter()
            self.log.info(f"loading the model on {device} (checkpoint: {p['checkpoint'] or 'embedded'})")
            model = load_model(p["checkpoint"], device, p["model_config"], log=self.log.warning)
            tracker = build_tracker(model, device, p)
            self.device = device
            self.log.info(f"model loaded on {device} in {time.perf_counter() - t0:.1f} s "
                          f"(checkpoint: {p['checkpoint'] or 'embedded'})")
        else:
            self.device = getattr(tracker, "device", "?")
        self.pipeline = Pipeline(tracker, self.registry, self.commands, PipelineConfig.from_params(p), logger=self.log)

        self.sync = LidarDrivenSync(num_cameras=len(p["cameras"]), tolerance_ns=int(p["sync_tolerance"] * NS),
                                    max_wait_ns=int(p["sync_max_wait"] * NS), queue_size=p["queue_size"],
                                    jump_ns=int(p["time_jump_threshold"] * NS))
        self.tf = make_tf(self, p["tf_backend"], cache_time_s=p["tf_cache_time"])

        # inputs
        depth = p["qos_depth"]
        def sensor_sub(msg_type, topic, cb, reliability):
            return SensorSubscription(self, msg_type, topic, cb, reliability, depth, count=self.stats.count)

        sub_points = sensor_sub(PointCloud2, p["points_topic"], self._on_cloud, p["points_reliability"])
        sub_images, sub_infos = [], []
        for i, (itopic, ctopic) in enumerate(zip(p["image_topics"], p["camera_info_topics"])):
            if p["image_transport"] == "compressed":
                sub_images.append(sensor_sub(CompressedImage, itopic.rstrip("/") + "/compressed",
                                             lambda m, i=i: self._on_image(i, m), p["image_reliability"]))
            else:
                sub_images.append(sensor_sub(Image, itopic, lambda m, i=i: self._on_image(i, m),
                                             p["image_reliability"]))
            sub_infos.append(sensor_sub(CameraInfo, ctopic, lambda m, i=i: self._on_camera_info(i, m),
                                        p["camera_info_reliability"]))
        self.sensor_subscriptions = [sub_points, *sub_images, *sub_infos]
        self.create_timer(1.0, self._check_qos)
        #: the input topics as subscribed: resolved (namespace, ``~``) and remapped, as ``ros2 topic`` shows them
        self.input_topics = {"points": sub_points.topic_name, "images": [s.topic_name for s in sub_images],
                             "camera_info": [s.topic_name for s in sub_infos]}
        click_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(PointStamped, p["click_topic"], lambda m: self._on_click(m, True), click_qos)
        self.create_subscription(PointStamped, p["negative_click_topic"], lambda m: self._on_click(m, False),
                                 click_qos)

        # outputs
        out_qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_points = self.create_publisher(PointCloud2, "~/points", out_qos)
        self.pub_mask, self.pub_overlay = [], []
        for i, name in enumerate(p["cameras"]):
            prefix = "~/" if i == 0 else f"~/{name}/"
            self.pub_mask.append(self.create_publisher(Image, prefix + "mask", out_qos))
            self.pub_overlay.append(self.create_publisher(Image, prefix + "overlay", out_qos))
        from sam4d_ros.msg import ObjectEvent, ObjectMasks
        from sam4d_ros.srv import AddPrompts, ListObjects, RemoveObject, ResetTracking, UndoLastPrompt

        self.pub_objects = self.create_publisher(ObjectMasks, "~/objects", out_qos)
        self.pub_events = self.create_publisher(ObjectEvent, "~/object_events",
                                                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self.pub_status = self.create_publisher(String, "~/status", QoSProfile(depth=5))
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))

        self.create_service(AddPrompts, "~/add_prompts", self._srv_add_prompts)
        self.create_service(RemoveObject, "~/remove_object", self._srv_remove)
        self.create_service(ResetTracking, "~/reset", self._srv_reset)
        self.create_service(ListObjects, "~/list_objects", self._srv_list)
        self.create_service(UndoLastPrompt, "~/undo_last_prompt", self._srv_undo)

        self.create_timer(p["status_period"], self._publish_status)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self.create_timer(0.25, self._check_clock)
        self._last_log = time.monotonic()

        self._running = True
        self._worker = threading.Thread(target=self._work, name="sam4d_worker", daemon=True)
        self._worker.start()
        t = self.input_topics
        self.log.info(f"TF backend: {self.tf.backend} ({self.tf.reason})")
        self.log.info(f"sam4d ready: points {t['points']}, images {t['images']} ({p['image_transport']}), "
                      f"camera_info {t['camera_info']}, clicks {self.resolve_topic_name(p['click_topic'])}, "
                      f"outputs {self.pub_points.topic_name}, TF backend {self.tf.backend}, device {self.device}")

    # ------------------------------------------------------------------ parameters
    def _validate_parameters(self) -> None:
        p, errors = self.p, []
        for name, choices in CHOICES.items():
            if p[name] not in choices:
                errors.append(f"{name}={p[name]!r} is not one of {choices}")
        n = len(p["cameras"])
        if n == 0:
            errors.append("cameras must name at least one camera")
        if len(p["image_topics"]) != n or len(p["camera_info_topics"]) != n:
            errors.append(f"cameras ({n}), image_topics ({len(p['image_topics'])}) and camera_info_topics "
                          f"({len(p['camera_info_topics'])}) must have the same length")
        if len(set(p["cameras"])) != n:
            errors.append(f"camera names must be unique: {p['cameras']}")
        if p["max_range"] and p["min_range"] >= p["max_range"]:
            errors.append(f"min_range {p['min_range']} must be < max_range {p['max_range']}")
        if not p["odom_frame"] and p["use_ego_motion"]:
            errors.append("odom_frame must be set when use_ego_motion is true")
        if errors:
            raise ValueError("invalid parameters: " + "; ".join(errors))

    # ------------------------------------------------------------------ inputs
    def _on_cloud(self, msg: PointCloud2) -> None:
        stamp = _ns(msg.header.stamp)
        last = self.sync.last_cloud_ns
        thr = int(self.p["time_jump_threshold"] * NS)
        if last is not None and stamp < last - thr:
            self._time_jump(f"cloud stamp jumped back {(last - stamp) / NS:.2f} s", keep_near_ns=stamp)
        with self._state_lock:
            self._latest_cloud_frame = msg.header.frame_id.lstrip("/") or self._latest_cloud_frame
            self._latest_cloud_ns = stamp
            self._last_cloud_wall = time.monotonic()
            if self._first_cloud_wall is None:
                self._first_cloud_wall = self._last_cloud_wall
        res = self.sync.add_cloud(stamp, msg)
        if res != "ok":
            self.stats.count(res)
            self.log.warning(f"dropping {res.replace('_', '-')} cloud stamped {stamp / NS:.6f} s "
                             f"(newest {last / NS:.6f})", throttle_duration_sec=5.0)

    def _on_image(self, cam: int, msg) -> None:
        self.sync.add_image(cam, _ns(msg.header.stamp), msg)

    def _on_camera_info(self, cam: int, msg: CameraInfo) -> None:
        try:
            self._camera_models[cam] = camera_model(msg)
        except ImageError as exc:
            self.stats.count("bad_camera_info")
            self.log.warning(f"ignoring CameraInfo of camera {self.p['cameras'][cam]!r}: {exc}",
                          throttle_duration_sec=5.0)

    def _check_clock(self) -> None:
        now = self.get_clock().now().nanoseconds
        last = self._last_clock_ns
        self._last_clock_ns = now
        if last is not None and now < last - int(self.p["time_jump_threshold"] * NS):
            self._time_jump(f"ROS clock jumped back {(last - now) / NS:.2f} s")

    def _time_jump(self, why: str, keep_near_ns: Optional[int] = None) -> None:
        forgotten = self.registry.ids()
        self.registry.clear()
        self._selected = None
        self.commands.put(ResetCommand(f"time jump: {why}"))
        self.sync.reset(keep_near_ns)
        self.tf.clear()
        self._last_pose = None
        self._last_clock_ns = self.get_clock().now().nanoseconds
        self.stats.count("time_jumps")
        self.log.warning(f"{why}: tracking, sync and TF buffer reset; forgot objects {forgotten} (prompt them again)")

    # ------------------------------------------------------------------ prompts
    def _prompt_context(self) -> PromptContext:
        sizes = [(cm.width, cm.height) if cm is not None else None for cm in self._camera_models]
        with self._state_lock:
            frame, latest = self._latest_cloud_frame, self._latest_cloud_ns
        return PromptContext(camera_names=list(self.p["cameras"]), camera_sizes=sizes, lidar_frame=frame,
                             latest_cloud_ns=latest, max_objects=self.p["max_objects"],
                             lookup=self._lookup_now)

    def _lookup_now(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        try:
            return self.tf.lookup(target, source, stamp_ns, 0.0)
        except TransformUnavailable as exc:
            raise LookupError(str(exc)) from None

    def _queue_prompt(self, cmd: PromptCommand) -> None:
        self.registry.add_prompt(cmd.obj_id)
        self.commands.put(cmd)
        self._selected = cmd.obj_id
        self.log.info(f"prompt queued: {cmd.describe()}")

    def _srv_add_prompts(self, req, resp):
        ctx = self._prompt_context()
        resp.success = True
        for prompt in req.prompts:
            cmd, why = validate_prompt(prompt, ctx)
            oid = -1
            if cmd is not None:
                oid, why2 = self.registry.reserve(cmd.obj_id)
                if oid < 0:
                    cmd, why = None, why2
                else:
                    cmd.obj_id = oid
            if cmd is None:
                resp.success = False
                resp.object_ids.append(-1)
                resp.accepted.append(False)
                resp.reasons.append(why)
                self.stats.count("prompts_rejected")
                self.stats.last_error = f"prompt rejected: {why}"
                self.log.warning(f"prompt rejected: {why}")
                continue
            self._queue_prompt(cmd)
            self.stats.count("prompts_accepted")
            resp.object_ids.append(oid)
            resp.accepted.append(True)
            resp.reasons.append("")
        return resp

    def _srv_remove(self, req, resp):
        oid = int(req.object_id)
        if self.registry.remove(oid):
            self.commands.put(RemoveCommand(oid))
            if self._selected == oid:
                self._selected = None
            resp.success, resp.message = True, f"object {oid} removed"
        else:
            resp.success, resp.message = False, f"unknown object id {oid} (known: {self.registry.ids()})"
        self.log.info(resp.message)
        return resp

    def _srv_undo(self, req, resp):
        oid = int(req.object_id)
        info = self.registry.get(oid)
        if info is None:
            resp.success, resp.message = False, f"unknown object id {oid} (known: {self.registry.ids()})"
        elif info.num_prompts == 0:
            resp.success, resp.message = False, f"object {oid} has no prompt to undo"
        else:
            self.commands.put(UndoCommand(oid))
            resp.success = True
            resp.message = (f"undo of object {oid}'s last prompt queued (applied before the next frame; the object "
                            f"is removed if that prompt created it)")
        self.log.info(resp.message)
        return resp

    def _srv_reset(self, req, resp):
        forgotten = self.registry.ids()
        self.registry.clear()
        self._selected = None
        self.commands.put(ResetCommand("service"))
        resp.success, resp.message = True, f"tracking reset; forgot objects {forgotten}"
        self.log.info(resp.message)
        return resp

    def _srv_list(self, req, resp):
        for o in self.registry.snapshot():
            resp.object_ids.append(o.obj_id)
            resp.last_scores.append(float(o.last_score))
            resp.frames_tracked.append(int(o.frames_tracked))
            resp.num_prompts.append(int(o.num_prompts))
        return resp

    def _on_click(self, msg: PointStamped, positive: bool) -> None:
        kind = "click" if positive else "negative click"
        with self._state_lock:
            lidar_frame, latest = self._latest_cloud_frame, self._latest_cloud_ns
        p = np.array([msg.point.x, msg.point.y, msg.point.z], np.float64)
        if lidar_frame is None or latest is None:
            return self._reject_click(kind, "no point cloud received yet")
        if not np.all(np.isfinite(p)):
            return self._reject_click(kind, f"point {p.tolist()} is not finite")
        frame = msg.header.frame_id.lstrip("/") or lidar_frame
        try:
            T = self.tf.lookup(lidar_frame, frame, latest, 0.0)
        except TransformUnavailable:
            try:  # the newest transform we have (RViz stamps clicks 'now', the cloud may be older)
                T = self.tf.lookup(lidar_frame, frame, 0, 0.0)
            except TransformUnavailable as exc:
                return self._reject_click(kind, f"cannot transform {frame!r} -> {lidar_frame!r}: {exc}")
        q = (T[:3, :3] @ p + T[:3, 3]).astype(np.float32)
        sel = self._selected
        if positive and (self.p["click_mode"] == "new" or sel is None or sel not in self.registry):
            oid, why = self.registry.reserve(0)
            if oid < 0:
                return self._reject_click(kind, why)
        else:
            oid = self._selected
            if oid is None or oid not in self.registry:
                return self._reject_click(kind, "no selected object to refine (click a positive point first)")
        cmd = PromptCommand(obj_id=oid, lidar_points=q[None], lidar_labels=np.array([1 if positive else 0]),
                            points_stamp_ns=latest, project_to_image=True, source="/clicked_point")
        self._queue_prompt(cmd)
        self.stats.count("clicks")

    def _reject_click(self, kind: str, why: str) -> None:
        self.stats.count("clicks_rejected")
        self.stats.last_error = f"{kind} ignored: {why}"
        self.log.error(f"{kind} ignored: {why}")

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            sf = self.sync.get(timeout_s=0.1)
            if sf is None:
                continue
            try:
                self._process(sf)
            except Exception as exc:  # noqa: BLE001 - the node must stay up
                self.stats.count("errors")
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.log.error(f"frame {sf.cloud_stamp_ns / NS:.6f} failed: {exc}\n{traceback.format_exc()}",
                               throttle_duration_sec=2.0)

    def _drop(self, key: str, why: str) -> None:
        self.stats.count(key)
        self.stats.last_error = why
        self.log.warning(why, throttle_duration_sec=5.0)

    def _pose_at(self, lidar_frame: str, stamp_ns: int) -> Optional[np.ndarray]:
        try:
            return self.tf.lookup(self.p["odom_frame"], lidar_frame, stamp_ns, 0.0)
        except TransformUnavailable:
            return None

    def _process(self, sf) -> None:
        t0 = time.perf_counter()
        p = self.p
        stamp = sf.cloud_stamp_ns
        try:
            fi = prepare_frame(sf, self._camera_models, self._rectifiers, self.tf, p, self._last_pose)
        except FrameDropped as exc:
            return self._drop(exc.key, str(exc))
        for key, why in fi.warnings:
            self._drop(key, why)
        if fi.lidar2odom is not None:
            self._last_pose = fi.lidar2odom
        log = self.pipeline.prompt_log
        failed, carried = log.failed, log.carried
        res = self.pipeline.process(stamp, fi.cloud, fi.images, fi.cameras, fi.camera2lidar, fi.lidar2odom,
                                    pose_at=lambda ns: self._pose_at(fi.lidar_frame, ns),
                                    due_tolerance_ns=int(p["sync_tolerance"] * NS))
        if log.failed > failed:
            self.stats.count("prompts_failed", log.failed - failed)
        if log.carried > carried:
            self.stats.count("prompts_carried", log.carried - carried)
        for e in res.errors:
            self._drop("frame_warnings", e)
        for a in res.applied:
            self.log.info(f"applied at {stamp / NS:.6f}: {a}")
        self._publish(sf, sf.cloud, res)
        now = time.perf_counter()
        lat = (self.get_clock().now().nanoseconds - stamp) / NS
        with self.stats.lock:
            self.stats.frames += 1
            self.stats.proc.append(now - t0)
            self.stats.latency.append(lat)
            self.stats.latency_recv.append(time.monotonic() - sf.received_wall)
            self.stats.publish_times.append(time.monotonic())
        self._last_frame_wall = time.monotonic()

    def _publish(self, sf, cmsg, res) -> None:
        if self.pub_points.get_subscription_count() > 0:
            self.pub_points.publish(outputs.points_msg(cmsg, res, self.p["output_only_segmented"]))
        for ci, (_, imsg) in enumerate(sf.images):
            if ci >= len(res.images):
                break
            if self.pub_mask[ci].get_subscription_count() > 0:
                self.pub_mask[ci].publish(outputs.mask_msg(imsg.header, res.id_maps[ci], self.p["mask_encoding"]))
            if self.pub_overlay[ci].get_subscription_count() > 0:
                self.pub_overlay[ci].publish(outputs.overlay_msg(imsg.header, res, ci))
        if self.pub_objects.get_subscription_count() > 0:
            img_stamp = sf.images[0][1].header.stamp if sf.images else cmsg.header.stamp
            self.pub_objects.publish(outputs.objects_msg(cmsg.header, img_stamp, res))
        if self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(outputs.markers_msg(cmsg.header, res))
        for ev, e in zip(outputs.event_msgs(cmsg.header, res), res.events):
            self.pub_events.publish(ev)
            self.log.info(f"object {e.obj_id}: {e.kind}" + (f" ({e.reason})" if e.reason else ""))

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """The status dictionary published on ~/status (JSON)."""
        s = self.stats.summary()
        s["counters"].update({f"sync_{k}": v for k, v in self.sync.counters.as_dict().items()})
        s["objects"] = [{"id": o.obj_id, "score": round(o.last_score, 3), "frames": o.frames_tracked,
                         "prompts": o.num_prompts} for o in self.registry.snapshot()]
        s["pending_commands"] = len(self.commands)
        s["tf_backend"] = self.tf.backend
        s["tf_backend_reason"] = self.tf.reason
        s["inputs"] = self.input_topics
        s["input_reliability"] = {sub.topic_name: sub.reliability for sub in self.sensor_subscriptions}
        s["device"] = self.device
        s["camera_info"] = [cm is not None for cm in self._camera_models]
        s["tracker"] = self._tracker_memory()
        return s

    def _tracker_memory(self) -> dict:
        """Stored memory entries and bytes of the tracker (bounded by max_prompted_frames + num_past_frames)."""
        tr = self.pipeline.tracker
        for _ in range(3):  # the worker may change the memory dict while we count: try again
            try:
                return {"stored_memories": int(getattr(tr, "num_stored_memories", 0)),
                        "memory_bytes": int(getattr(tr, "memory_bytes", 0))}
            except RuntimeError:
                time.sleep(0.001)
        return {"stored_memories": None, "memory_bytes": None}

    def _publish_diagnostics(self) -> None:
        s = self.status()
        with self._state_lock:
            first, last = self._first_cloud_wall, self._last_cloud_wall
        level, message = self.health.evaluate(s, time.monotonic(), first, last, self._last_frame_wall)
        self.pub_diagnostics.publish(diagnostic_array(s, level, message, hardware_id=self.get_name(),
                                                      stamp=self.get_clock().now().to_msg()))

    def _publish_status(self) -> None:
        s = self.status()
        self.pub_status.publish(String(data=json.dumps(s)))
        lp = self.p["log_period"]
        if lp > 0 and time.monotonic() - self._last_log >= lp:
            self._last_log = time.monotonic()
            c = s["counters"]
            self.log.info(
                f"status: {s['frames_processed']} frames, {s['fps']} fps, processing p50 "
                f"{s['processing_time_ms']['p50']} ms, latency p50 {s['latency_ms']['p50']} ms, skipped "
                f"{c.get('sync_skipped', 0)}, unpaired {c.get('sync_unpaired', 0)}, objects "
                f"{[o['id'] for o in s['objects']]}")

    def _check_qos(self) -> None:
        for sub in self.sensor_subscriptions:
            try:
                sub.check()
            except Exception as exc:  # noqa: BLE001 - graph queries during shutdown
                self.log.debug(f"QoS check of {sub.topic_name}: {exc}")

    def destroy_node(self) -> None:
        # also on a node whose constructor failed (rclpy's context shutdown destroys every node it created)
        self._running = False
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=10.0)
        if getattr(self, "tf", None) is not None:
            self.tf.close()
        super().destroy_node()


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point: ``sam4d_node --ros-args -p checkpoint:=random ...``; returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv[1:]) and "--ros-args" not in argv:
        print(__doc__)
        print("Parameters:")
        for name, (default, desc, _) in PARAMETERS.items():
            print(f"  {name} (default {default!r}): {desc}")
        return 0
    from rclpy.signals import SignalHandlerOptions

    from sam4d_ros.shutdown import ShutdownSignals

    signals = ShutdownSignals("sam4d")
    node = None
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = Sam4dNode()
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            rclpy.logging.get_logger("sam4d").fatal(str(exc))
            return 2
        signals.started()
        if signals.event.is_set():  # a signal while the model loaded
            node.log.info("interrupted during start-up; exiting")
            return 0
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        try:
            signals.spin(executor)
        except rclpy.executors.ExternalShutdownException:
            pass
        node.log.info("shutting down")
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
