# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Prompt validation, the object registry and the ordered command queue between ROS callbacks and the worker.

Service callbacks and ``/clicked_point`` validate a prompt at once (:func:`validate_prompt`) and either reject it
with a reason or turn it into a :class:`PromptCommand` in the :class:`CommandQueue`. The worker thread takes the
commands that are due before each frame (``stamp == 0``: the next processed frame; a stamp: the first frame at or
after it, or the next frame when that stamp has already passed) and applies them to the tracker in arrival order.
Nothing here imports ROS message types: messages are read duck-typed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

MODALITY_IMAGE, MODALITY_LIDAR, MODALITY_POINT3D = 0, 1, 2
MODALITY_NAMES = {MODALITY_IMAGE: "image", MODALITY_LIDAR: "lidar", MODALITY_POINT3D: "point3d"}
MAX_POINTS_PER_PROMPT = 64


@dataclass
class PromptCommand:
    """A validated prompt for one object, ready for ``StreamingTracker.add_prompt``.

    LiDAR/3D points are already in the LiDAR frame as it was at ``points_stamp_ns`` (0: the frame they are
    applied to); the worker compensates ego-motion between that time and the frame it applies them to.
    """

    obj_id: int
    target_stamp_ns: int = 0
    camera: int = 0
    image_points: Optional[np.ndarray] = None
    image_labels: Optional[np.ndarray] = None
    image_box: Optional[np.ndarray] = None
    lidar_points: Optional[np.ndarray] = None
    lidar_labels: Optional[np.ndarray] = None
    lidar_box: Optional[np.ndarray] = None
    points_stamp_ns: int = 0
    reset_object: bool = False
    project_to_image: bool = False
    source: str = "service"

    def describe(self) -> str:
        """One line for logs."""
        parts = []
        if self.image_points is not None:
            parts.append(f"{len(self.image_points)} image point(s) cam {self.camera}")
        if self.image_box is not None:
            parts.append(f"image box {np.round(self.image_box, 1).tolist()}")
        if self.lidar_points is not None:
            parts.append(f"{len(self.lidar_points)} LiDAR point(s) "
                         f"(+{int(self.lidar_labels.sum())}/-{int((self.lidar_labels == 0).sum())})")
        if self.lidar_box is not None:
            parts.append(f"LiDAR box {np.round(self.lidar_box, 2).tolist()}")
        return f"object {self.obj_id} from {self.source}: " + ", ".join(parts)


@dataclass
class RemoveCommand:
    """Forget one object."""

    obj_id: int


@dataclass
class ResetCommand:
    """Forget all objects, prompts and memory."""

    reason: str = "service"


@dataclass
class UndoCommand:
    """Revert one object to its state before its last prompt (``StreamingTracker.undo_last_prompt``)."""

    obj_id: int


Command = Union[PromptCommand, RemoveCommand, ResetCommand, UndoCommand]


@dataclass
class ObjectInfo:
    """What the node knows about one object (for ListObjects and validation)."""

    obj_id: int
    num_prompts: int = 0
    frames_tracked: int = 0
    last_score: float = 0.0
    active: bool = False  # the tracker has it (at least one prompt applied)


@dataclass
class PromptContext:
    """What validation needs to know about the node's current state."""

    camera_names: Sequence[str]
    camera_sizes: Sequence[Optional[Tuple[int, int]]]  # (width, height) per camera, None before CameraInfo
    lidar_frame: Optional[str]  # frame of the newest cloud, None before the first cloud
    latest_cloud_ns: Optional[int]
    max_objects: int
    # (target_frame, source_frame, stamp_ns) -> 4x4, raises LookupError with the reason
    lookup: Optional[Callable[[str, str, int], np.ndarray]] = None


class ObjectRegistry:
    """Object ids known to the node: assigned, prompted, tracked. Thread-safe."""

    def __init__(self, max_objects: int):
        self.max_objects = int(max_objects)
        self._objects: Dict[int, ObjectInfo] = {}
        self._next_id = 1
        self.lock = threading.RLock()

    def ids(self) -> List[int]:
        with self.lock:
            return sorted(self._objects)

    def get(self, obj_id: int) -> Optional[ObjectInfo]:
        with self.lock:
            return self._objects.get(obj_id)

    def __contains__(self, obj_id: int) -> bool:
        with self.lock:
            return obj_id in self._objects

    def reserve(self, obj_id: int) -> Tuple[int, Optional[str]]:
        """Claim ``obj_id`` (0: a new id). Returns ``(id, None)`` or ``(-1, reason)``."""
        with self.lock:
            if obj_id < 0:
                return -1, f"object_id must be >= 1 (or 0 for a new object), got {obj_id}"
            if obj_id in self._objects:
                return obj_id, None
            if len(self._objects) >= self.max_objects:
                return -1, (f"too many objects: already tracking {len(self._objects)} (max_objects="
                            f"{self.max_objects}); remove one first")
            if obj_id == 0:
                while self._next_id in self._objects:
                    self._next_id += 1
                obj_id = self._next_id
            self._next_id = max(self._next_id, obj_id + 1)
            self._objects[obj_id] = ObjectInfo(obj_id)
            return obj_id, None

    def release_if_unused(self, obj_id: int) -> None:
        """Undo :meth:`reserve` of an object that got no prompt."""
        with self.lock:
            info = self._objects.get(obj_id)
            if info is not None and info.num_prompts == 0 and not info.active:
                del self._objects[obj_id]

    def add_prompt(self, obj_id: int) -> None:
        with self.lock:
            self._objects.setdefault(obj_id, ObjectInfo(obj_id)).num_prompts += 1

    def undo_prompt(self, obj_id: int) -> None:
        """One prompt of ``obj_id`` was undone (the count of prompts goes down by one)."""
        with self.lock:
            info = self._objects.get(obj_id)
            if info is not None and info.num_prompts > 0:
                info.num_prompts -= 1

    def remove(self, obj_id: int) -> bool:
        with self.lock:
            return self._objects.pop(obj_id, None) is not None

    def clear(self) -> None:
        with self.lock:
            self._objects.clear()
            self._next_id = 1

    def update_tracked(self, obj_ids: Sequence[int], scores: Sequence[float]) -> None:
        """After a frame: mark these ids tracked with their scores."""
        with self.lock:
            for oid, s in zip(obj_ids, scores):
                info = self._objects.get(int(oid))
                if info is None:  # removed meanwhile: the worker removes it from the tracker next frame
                    continue
                info.active = True
                info.frames_tracked += 1
                info.last_score = float(s)

    def snapshot(self) -> List[ObjectInfo]:
        with self.lock:
            return [ObjectInfo(**o.__dict__) for _, o in sorted(self._objects.items())]


class CommandQueue:
    """Ordered commands from callbacks to the worker, taken when due. Thread-safe."""

    def __init__(self):
        self._items: List[Command] = []
        self._lock = threading.Lock()

    def put(self, cmd: Command) -> None:
        with self._lock:
            if isinstance(cmd, ResetCommand):  # everything before a reset is void
                self._items = [c for c in self._items
                               if not isinstance(c, (PromptCommand, RemoveCommand, UndoCommand))]
            self._items.append(cmd)

    def take_due(self, frame_stamp_ns: int, tolerance_ns: int = 0) -> List[Command]:
        """Commands to apply before the frame stamped ``frame_stamp_ns``; later-stamped prompts stay queued.

        A prompt that names a future stamp also holds back the commands queued after it for the same object, so
        that per-object order is kept.
        """
        with self._lock:
            due, keep, held = [], [], set()
            for c in self._items:
                oid = getattr(c, "obj_id", None)
                if isinstance(c, PromptCommand) and c.target_stamp_ns > frame_stamp_ns + tolerance_ns:
                    held.add(c.obj_id)
                    keep.append(c)
                elif oid is not None and oid in held:
                    keep.append(c)
                else:
                    due.append(c)
            self._items = keep
            return due

    def drop_all(self) -> List[Command]:
        with self._lock:
            items, self._items = self._items, []
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _finite(arr: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(arr)))


def _points(pts, dims: int) -> np.ndarray:
    return np.array([[p.x, p.y, p.z][:dims] for p in pts], dtype=np.float64).reshape(-1, dims)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def validate_prompt(msg, ctx: PromptContext) -> Tuple[Optional[PromptCommand], str]:
    """Check a ``sam4d_ros/Prompt`` against the node state. Returns ``(command, "")`` or ``(None, reason)``.

    The object id in the command is the requested one (0 = to be assigned); reserving ids is the caller's job.
    """
    modality = int(msg.modality)
    if modality not in MODALITY_NAMES:
        return None, f"unknown modality {modality} (0=image, 1=lidar, 2=point3d)"
    if int(msg.object_id) < 0:
        return None, f"object_id must be >= 1 (or 0 for a new object), got {msg.object_id}"
    name = MODALITY_NAMES[modality]
    dims = 2 if modality == MODALITY_IMAGE else 3
    pos, neg = _points(msg.positive_points, dims), _points(msg.negative_points, dims)
    box = np.array([[msg.box_min.x, msg.box_min.y, msg.box_min.z],
                    [msg.box_max.x, msg.box_max.y, msg.box_max.z]], np.float64)[:, :dims] if msg.has_box else None
    if len(pos) + len(neg) == 0 and box is None:
        return None, f"{name} prompt has no points and no box"
    if len(pos) == 0 and box is None:
        return None, f"{name} prompt has only negative points; add a positive point or a box"
    if len(pos) + len(neg) > MAX_POINTS_PER_PROMPT:
        return None, f"{name} prompt has {len(pos) + len(neg)} points (max {MAX_POINTS_PER_PROMPT})"
    for what, arr in (("positive points", pos), ("negative points", neg), ("box", box)):
        if arr is not None and not _finite(arr):
            return None, f"{name} prompt: {what} contain NaN or inf"
    if box is not None and np.any(box[1] < box[0]):
        return None, f"{name} prompt: box_max {box[1].tolist()} is below box_min {box[0].tolist()} on some axis"
    if box is not None and modality == MODALITY_IMAGE and np.any(box[1] - box[0] < 1.0):
        return None, f"image prompt: box {box.ravel().tolist()} is smaller than one pixel"
    pts = np.concatenate([pos, neg], 0)
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    stamp = _stamp_ns(msg.header.stamp)
    cmd = PromptCommand(obj_id=int(msg.object_id), target_stamp_ns=stamp, reset_object=bool(msg.reset_object))

    if modality == MODALITY_IMAGE:
        cam_name = str(msg.camera)
        names = list(ctx.camera_names)
        if cam_name == "":
            cam = 0
        elif cam_name in names:
            cam = names.index(cam_name)
        else:
            return None, f"unknown camera {cam_name!r} (configured: {names})"
        size = ctx.camera_sizes[cam] if cam < len(ctx.camera_sizes) else None
        if size is None:
            return None, f"no valid CameraInfo received yet for camera {names[cam]!r}: cannot check image prompts"
        w, h = size
        if len(pts):
            out = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
            if out.any():
                return None, (f"image prompt: point(s) {pts[out].tolist()} outside the {w}x{h} image of "
                              f"camera {names[cam]!r}")
        if box is not None and (box[0, 0] < 0 or box[0, 1] < 0 or box[1, 0] > w or box[1, 1] > h):
            return None, f"image prompt: box {box.ravel().tolist()} is outside the {w}x{h} image of {names[cam]!r}"
        cmd.camera = cam
        if len(pts):
            cmd.image_points, cmd.image_labels = pts.astype(np.float32), labels
        cmd.image_box = box.reshape(4).astype(np.float32) if box is not None else None
        return cmd, ""

    # LiDAR / 3D
    if modality == MODALITY_POINT3D:
        frame = str(msg.header.frame_id).lstrip("/")
        if not frame:
            return None, "point3d prompt needs header.frame_id (the TF frame of its points)"
        if ctx.lidar_frame is None or ctx.latest_cloud_ns is None:
            return None, "no point cloud received yet: the LiDAR frame is unknown, cannot transform point3d prompts"
        at = stamp if stamp > 0 else ctx.latest_cloud_ns
        if frame != ctx.lidar_frame:
            if ctx.lookup is None:
                return None, "no TF available"
            try:
                T = np.asarray(ctx.lookup(ctx.lidar_frame, frame, at))
            except LookupError as exc:
                return None, f"cannot transform point3d prompt from {frame!r} to {ctx.lidar_frame!r}: {exc}"
            if len(pts):
                pts = pts @ T[:3, :3].T + T[:3, 3]
            if box is not None:  # axis-aligned box of the transformed corners
                corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
                corners = corners @ T[:3, :3].T + T[:3, 3]
                box = np.stack([corners.min(0), corners.max(0)])
        cmd.points_stamp_ns = at
    else:
        cmd.points_stamp_ns = stamp
    if len(pts):
        cmd.lidar_points, cmd.lidar_labels = pts.astype(np.float32), labels
    cmd.lidar_box = box.astype(np.float32) if box is not None else None
    return cmd, ""


def compensate_ego_motion(points: np.ndarray, lidar2odom_from: np.ndarray, lidar2odom_to: np.ndarray) -> np.ndarray:
    """Move LiDAR-frame points from the sensor pose at one time into the sensor frame at another."""
    T = np.linalg.inv(lidar2odom_to) @ lidar2odom_from
    return (points @ T[:3, :3].T + T[:3, 3]).astype(np.float32)


@dataclass
class PromptLog:
    """Recent prompt outcomes, for the status topic."""

    accepted: int = 0
    rejected: int = 0
    applied: int = 0
    failed: int = 0
    carried: int = 0  # image prompts naming a passed frame, carried over as LiDAR points
    last_rejection: str = ""
    history: List[str] = field(default_factory=list)
