# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline labelling: run the node's pipeline on a recorded bag as fast as possible (no DDS) into a new bag.

    sam4d-process-bag IN.mcap --prompts prompts.yaml -o OUT.mcap [--config config/sam4d.yaml]
                      [--checkpoint PATH|random] [--device auto] [--no-copy-inputs] [--max-frames N]
                      [--direction both|forward] [--export-semantickitti DIR] [--export-nuscenes DIR]

The labelling loop: prompts on any frame; every object is tracked forward from its first prompted frame and, with
``--direction both`` (default, as SAM2's video predictor), backward from there to the start of the bag (the
processed frames are kept in memory for that pass, about the size of their clouds and images). Point-wise labels can
also be exported as SemanticKITTI (``sequences/<seq>/velodyne/*.bin`` + ``labels/*.label``: class in the low 16 bits,
object id in the high 16) and nuScenes-lidarseg (``samples/LIDAR_TOP/*.pcd.bin`` + ``lidarseg/*_lidarseg.bin``,
uint8 class per point); classes come from the prompts' ``class`` (``sam4d_model.data.lidarseg``).

Every cloud is processed (no skipping): paired with the nearest image (``sync_tolerance``), CameraInfo latest
valid, TF from the bag's ``/tf`` and ``/tf_static``. The output bag gets the node's topics (``/sam4d/points``,
``/sam4d/mask``, ``/sam4d/overlay``, ``/sam4d/objects``, ``/sam4d/markers``), stamped like the inputs, and by
default a copy of the input topics. ``-o X.mcap`` writes one bare MCAP file, any other name a rosbag2 directory.

prompts.yaml::

    prompts:
      - frame: 0              # index of the processed frame (or `stamp: <seconds>`)
        object_id: 1          # 0 or missing: assigned
        class: car            # optional: class of the object for the exports (SemanticKITTI / nuScenes name or alias)
        modality: lidar       # image | lidar | point3d
        camera: ""            # image prompts: camera name ("" = first)
        frame_id: ""          # point3d prompts: TF frame of the points
        positive_points: [[12.1, -3.4, 0.2]]
        negative_points: []
        box: [[x0, y0, z0], [x1, y1, z1]]   # optional (image: [[x0, y0], [x1, y1]])
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import yaml

from sam4d_model.data.lidarseg import semantic_ids, write_nuscenes_lidarseg, write_semantickitti
from sam4d_ros.bag_replay import message_class
from sam4d_ros.node import PARAMETERS

NS = 1_000_000_000
MODALITIES = {"image": 0, "lidar": 1, "point3d": 2}
OUTPUT_TYPES = {
    "points": "sensor_msgs/msg/PointCloud2", "mask": "sensor_msgs/msg/Image", "overlay": "sensor_msgs/msg/Image",
    "objects": "sam4d_ros/msg/ObjectMasks", "markers": "visualization_msgs/msg/MarkerArray",
    "object_events": "sam4d_ros/msg/ObjectEvent",
}


def load_params(config: Optional[str]) -> dict:
    """Node parameter defaults, overridden by a ROS parameter YAML (any node key, ``ros__parameters``)."""
    p = {k: v[0] for k, v in PARAMETERS.items()}
    if config:
        data = yaml.safe_load(Path(config).read_text()) or {}
        for node_block in data.values():
            if isinstance(node_block, dict) and "ros__parameters" in node_block:
                p.update({k: v for k, v in node_block["ros__parameters"].items() if k in p})
    return p


def _pt(v):
    from geometry_msgs.msg import Point

    v = list(v) + [0.0] * (3 - len(v))
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def prompt_from_dict(d: dict):
    """A ``sam4d_ros/Prompt`` from one entry of prompts.yaml (ValueError with the reason when malformed)."""
    from sam4d_ros.msg import Prompt

    mod = str(d.get("modality", "lidar"))
    if mod not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, not {mod!r}")
    p = Prompt(object_id=int(d.get("object_id", 0)), modality=MODALITIES[mod], camera=str(d.get("camera", "")))
    p.header.frame_id = str(d.get("frame_id", ""))
    if "stamp" in d:
        p.header.stamp.sec, p.header.stamp.nanosec = divmod(int(round(float(d["stamp"]) * NS)), NS)
    p.positive_points = [_pt(v) for v in d.get("positive_points", [])]
    p.negative_points = [_pt(v) for v in d.get("negative_points", [])]
    if d.get("box") is not None:
        p.has_box = True
        p.box_min, p.box_max = _pt(d["box"][0]), _pt(d["box"][1])
    p.reset_object = bool(d.get("reset_object", False))
    return p


def load_prompts(path: Optional[str]) -> List[dict]:
    """Entries of prompts.yaml (a list, or a dict with a ``prompts`` list)."""
    if not path:
        return []
    data = yaml.safe_load(Path(path).read_text()) or []
    items = data.get("prompts", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of prompts")
    return items


def _typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    dirs = [Path(__file__).resolve().parents[1] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("sam4d_ros")) / "msg")
    except Exception:  # noqa: BLE001 - not installed / no ament index
        pass
    types = {}
    for d in dirs:
        for name in ("ObjectMask", "ObjectMasks", "ObjectEvent", "Prompt"):
            f = d / f"{name}.msg"
            if f.is_file() and f"sam4d_ros/msg/{name}" not in types:
                types.update(get_types_from_msg(f.read_text(), f"sam4d_ros/msg/{name}"))
    ts.register(types)
    return ts


class BagOutput:
    """rosbag2 writer (MCAP) taking rclpy messages or raw CDR."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.final = Path(path)
        self.bare = self.final.suffix == ".mcap"
        if self.final.exists():
            raise FileExistsError(f"{self.final} exists")
        self._tmp = Path(tempfile.mkdtemp(prefix="sam4d_out_", dir=self.final.parent or None)) if self.bare else None
        self.dir = self._tmp / "bag" if self.bare else self.final
        self.writer = Writer(self.dir, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.ts = _typestore()
        self.conns: Dict[str, object] = {}
        self.counts: Dict[str, int] = {}

    def write_raw(self, topic: str, msgtype: str, t_ns: int, raw: bytes) -> bool:
        if topic not in self.conns:
            try:
                self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.ts)
            except Exception:  # noqa: BLE001 - unknown type: cannot write its schema
                self.conns[topic] = None
        conn = self.conns[topic]
        if conn is None:
            return False
        self.writer.write(conn, int(t_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        return True

    def write(self, topic: str, msgtype: str, t_ns: int, msg) -> None:
        from rclpy.serialization import serialize_message

        self.write_raw(topic, msgtype, t_ns, serialize_message(msg))

    def close(self) -> Path:
        self.writer.close()
        if self.bare:
            inner = sorted(self.dir.glob("*.mcap"))[0]
            shutil.move(str(inner), self.final)
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.final


def merge_backward(fwd, bwd, backward_ids) -> None:
    """Fill ``fwd`` (a :class:`FrameResult`, in place) with the objects of ``backward_ids`` from ``bwd``.

    Points and pixels of those objects in the backward result take their label where the forward result has none,
    or has a lower score; their per-object summaries are added.
    """
    ids = np.asarray(sorted(backward_ids), np.int32)
    take = np.isin(bwd.labels, ids) & ((fwd.labels < 0) | (bwd.scores > fwd.scores))
    fwd.labels[take] = bwd.labels[take]
    fwd.scores[take] = bwd.scores[take]
    for fm, bm in zip(fwd.id_maps, bwd.id_maps):
        fill = np.isin(bm, ids) & (fm == 0)
        fm[fill] = bm[fill]
    fwd.objects += [o for o in bwd.objects if o.obj_id in backward_ids]


def process_bag(in_path, out_path, prompts: List[dict], params: dict, tracker=None, copy_inputs: bool = True,
                max_frames: int = 0, namespace: str = "/sam4d", log=print, direction: str = "both",
                export_semantickitti: Optional[str] = None, export_nuscenes: Optional[str] = None,
                sequence: str = "00") -> dict:
    """Run the pipeline over a bag; returns a summary dict (frames, drops, timings, objects).

    ``direction``: ``forward`` (each object from its first prompted frame on, in one pass, outputs written as
    frames are processed) or ``both`` (as SAM2's video predictor: then also backward from each object's first
    prompted frame to the start of the bag, by a second tracker over the processed frames in reverse order; the
    processed frames are kept in memory until the outputs are written). ``export_semantickitti`` /
    ``export_nuscenes``: folders for the point-wise labels in those layouts (classes from the prompts'
    ``class`` entries, instance = object id).
    """
    if direction not in ("forward", "both"):
        raise ValueError(f"direction must be 'forward' or 'both', got {direction!r}")
    for d in prompts:  # class names are checked before anything is read or written
        if isinstance(d, dict):
            semantic_ids(d.get("class"))
    from rclpy.serialization import deserialize_message

    from sam4d_ros import outputs
    from sam4d_ros.bag_replay import bag_topics, read_bag
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
    from sam4d_ros.prompts import CommandQueue, ObjectRegistry, PromptContext, validate_prompt
    from sam4d_ros.sync import LidarDrivenSync
    from sam4d_ros.tf import BufferTransformSource

    p = params
    if tracker is None:
        device = resolve_device(p["device"])
        model = load_model(p["checkpoint"], device, p["model_config"], log=log)
        tracker = build_tracker(model, device, p)
    else:
        device = str(tracker.device)
    classes_of: Dict[int, str] = {}  # object id -> class name (prompt entries' `class`)
    accepted: Dict[int, List] = {}  # processed frame index -> validated prompt commands (for the backward pass)
    kept: List = []  # (sf, fi, res) of every processed frame, with direction both
    registry, commands = ObjectRegistry(p["max_objects"]), CommandQueue()
    pipe = Pipeline(tracker, registry, commands, PipelineConfig.from_params(p))
    tf = BufferTransformSource(cache_time_s=60.0)
    cams = list(p["cameras"])
    img_topics = list(p["image_topics"])
    if p["image_transport"] == "compressed":
        img_topics = [t.rstrip("/") + "/compressed" for t in img_topics]
    info_topics = list(p["camera_info_topics"])
    bag_time = [0.0]
    tol = int(p["sync_tolerance"] * NS)
    sync = LidarDrivenSync(len(cams), tolerance_ns=tol, max_wait_ns=max(tol, 1), queue_size=1_000_000,
                           clock=lambda: bag_time[0])
    models: List = [None] * len(cams)
    rects = [Rectifier() for _ in cams]
    types = bag_topics(in_path)
    wanted = {p["points_topic"], "/tf", "/tf_static", *img_topics, *info_topics}
    missing = [t for t in [p["points_topic"], *img_topics, *info_topics] if t not in types]
    if missing:
        raise ValueError(f"{in_path} has no topic(s) {missing} (topics: {sorted(types)})")
    classes = {t: message_class(types[t]) for t in types if t in wanted}
    out = BagOutput(Path(out_path))
    summary = {"frames": 0, "dropped": {}, "inference_s": [], "objects": {}, "prompts": [], "applied": []}
    pending_prompts = sorted(prompts, key=lambda d: (float(d.get("stamp", -1)), int(d.get("frame", 0))))
    ready: deque = deque()
    tf_wait = int(0.2 * NS)
    last_pose = [None]
    frame_idx = [0]

    def queue_prompts(stamp_ns: int, lidar_frame: str) -> None:
        ctx = PromptContext(cams, [(m.width, m.height) if m else None for m in models], lidar_frame, stamp_ns,
                            p["max_objects"], lookup=lambda a, b, t: _lookup(tf, a, b, t))
        while pending_prompts:
            d = pending_prompts[0]
            due = (float(d["stamp"]) * NS <= stamp_ns + tol) if "stamp" in d else int(d.get("frame", 0)) <= frame_idx[0]
            if not due:
                break
            pending_prompts.pop(0)
            try:
                cmd, why = validate_prompt(prompt_from_dict(d), ctx)
            except (ValueError, TypeError, KeyError) as exc:
                cmd, why = None, f"malformed prompt entry {d}: {exc}"
            if cmd is not None:
                oid, why2 = registry.reserve(cmd.obj_id)
                if oid < 0:
                    cmd, why = None, why2
                else:
                    cmd.obj_id = oid
                    cmd.target_stamp_ns = 0
                    registry.add_prompt(oid)
                    commands.put(cmd)
                    accepted.setdefault(frame_idx[0], []).append(dataclasses.replace(cmd))
                    if d.get("class") not in (None, ""):  # checked at the start of process_bag
                        classes_of[oid] = str(d["class"])
            summary["prompts"].append({"entry": d, "accepted": cmd is not None, "object_id": cmd.obj_id if cmd else -1,
                                       "reason": why, "frame": frame_idx[0]})
            log(f"prompt {'queued: ' + cmd.describe() if cmd else 'REJECTED: ' + why}")

    def run_frame(sf) -> None:
        try:
            fi = prepare_frame(sf, models, rects, tf, p, last_pose[0])
        except FrameDropped as exc:
            summary["dropped"][exc.key] = summary["dropped"].get(exc.key, 0) + 1
            log(f"frame dropped: {exc}")
            return
        if fi.lidar2odom is not None:
            last_pose[0] = fi.lidar2odom
        queue_prompts(sf.cloud_stamp_ns, fi.lidar_frame)
        res = pipe.process(sf.cloud_stamp_ns, fi.cloud, fi.images, fi.cameras, fi.camera2lidar, fi.lidar2odom,
                           pose_at=lambda ns: _pose(tf, p["odom_frame"], fi.lidar_frame, ns))
        frame_idx[0] += 1
        summary["applied"] += res.applied
        for e in res.errors:
            log(f"warning: {e}")
        if direction == "both":
            kept.append((sf, fi, res))
        else:
            emit(sf, fi, res)

    def emit(sf, fi, res) -> None:
        t = sf.cloud_stamp_ns
        cm = sf.cloud
        out.write(f"{namespace}/points", OUTPUT_TYPES["points"], t,
                  outputs.points_msg(cm, res, p["output_only_segmented"]))
        for ci, (_, im) in enumerate(sf.images):
            prefix = f"{namespace}/" if ci == 0 else f"{namespace}/{cams[ci]}/"
            out.write(prefix + "mask", OUTPUT_TYPES["mask"], t, outputs.mask_msg(im.header, res.id_maps[ci],
                                                                                p["mask_encoding"]))
            out.write(prefix + "overlay", OUTPUT_TYPES["overlay"], t, outputs.overlay_msg(im.header, res, ci))
        out.write(f"{namespace}/objects", OUTPUT_TYPES["objects"], t,
                  outputs.objects_msg(cm.header, sf.images[0][1].header.stamp, res))
        out.write(f"{namespace}/markers", OUTPUT_TYPES["markers"], t, outputs.markers_msg(cm.header, res))
        for ev in outputs.event_msgs(cm.header, res):
            out.write(f"{namespace}/object_events", OUTPUT_TYPES["object_events"], t, ev)
        summary.setdefault("events", []).extend(
            {"t": t / NS, "object_id": e.obj_id, "event": e.kind, "reason": e.reason} for e in res.events)
        summary["frames"] += 1
        summary["inference_s"].append(res.inference_time)
        for o in res.objects:
            summary["objects"].setdefault(o.obj_id, []).append(o.num_points)
        if export_semantickitti or export_nuscenes:
            sem = np.zeros(len(res.labels), np.int64)
            nus = np.zeros(len(res.labels), np.int64)
            for oid, name in classes_of.items():
                sk, ns = semantic_ids(name)
                sem[res.labels == oid], nus[res.labels == oid] = sk, ns
            pts = np.c_[fi.cloud.xyz, fi.cloud.intensity if fi.cloud.intensity is not None
                        else np.zeros(fi.cloud.num_points, np.float32)]
            k = summary["frames"] - 1
            if export_semantickitti:
                write_semantickitti(export_semantickitti, sequence, k, pts, sem, np.maximum(res.labels, 0))
            if export_nuscenes:
                write_nuscenes_lidarseg(export_nuscenes, f"{sequence}_{sf.cloud_stamp_ns // 1000:d}", pts, nus)

    def run_backward() -> None:
        """Second pass, as SAM2's reverse propagation: each object from its first prompted frame back to frame 0."""
        first: Dict[int, int] = {}
        for k in sorted(accepted):
            for c in accepted[k]:
                first.setdefault(c.obj_id, k)
        late = {o: k for o, k in first.items() if k > 0}
        if not late:
            return
        log(f"backward pass: objects {sorted(late)} from frames {sorted(set(late.values()))} back to frame 0")
        btracker = build_tracker(tracker.model, device, p)
        breg, bcmds = ObjectRegistry(p["max_objects"]), CommandQueue()
        bpipe = Pipeline(btracker, breg, bcmds, PipelineConfig.from_params(p))
        poses = {sf.cloud_stamp_ns: fi.lidar2odom for sf, fi, _ in kept}
        for k in range(max(late.values()), -1, -1):
            sf, fi, res = kept[k]
            for c in accepted.get(k, []):
                if c.obj_id in late:
                    breg.reserve(c.obj_id)
                    breg.add_prompt(c.obj_id)
                    bcmds.put(dataclasses.replace(c))
            bres = bpipe.process(sf.cloud_stamp_ns, fi.cloud, fi.images, fi.cameras, fi.camera2lidar, fi.lidar2odom,
                                 pose_at=lambda ns: poses.get(ns))
            merge_backward(res, bres, {o for o, f in late.items() if k < f})

    t_start = time.perf_counter()
    try:
        for topic, msgtype, t, raw in read_bag(in_path):
            bag_time[0] = t / NS
            if copy_inputs:
                out.write_raw(topic, msgtype, t, raw)
            if topic not in classes or classes[topic] is None:
                continue
            msg = deserialize_message(raw, classes[topic])
            if topic in ("/tf", "/tf_static"):
                tf.add_message(msg, static=topic == "/tf_static")
            elif topic == p["points_topic"]:
                st = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
                r = sync.add_cloud(st, msg)
                if r != "ok":
                    summary["dropped"][r] = summary["dropped"].get(r, 0) + 1
            elif topic in img_topics:
                sync.add_image(img_topics.index(topic), int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec),
                               msg)
            elif topic in info_topics:
                try:
                    models[info_topics.index(topic)] = camera_model(msg)
                except ImageError as exc:
                    summary["dropped"]["bad_camera_info"] = summary["dropped"].get("bad_camera_info", 0) + 1
                    log(f"bad CameraInfo: {exc}")
            sync.poll()
            while True:
                sf = sync.get(0.0)
                if sf is None:
                    break
                ready.append(sf)
            while ready and ready[0].cloud_stamp_ns + tf_wait <= t:
                run_frame(ready.popleft())
                if max_frames and frame_idx[0] >= max_frames:
                    break
            if max_frames and frame_idx[0] >= max_frames:
                break
        bag_time[0] = float("inf")
        sync.poll()
        while (sf := sync.get(0.0)) is not None:
            ready.append(sf)
        while ready and not (max_frames and frame_idx[0] >= max_frames):
            run_frame(ready.popleft())
        if direction == "both":
            run_backward()
            for sf, fi, res in kept:
                emit(sf, fi, res)
    finally:
        path = out.close()
    wall = time.perf_counter() - t_start
    c = sync.counters.as_dict()
    summary.update({"wall_s": wall, "fps": summary["frames"] / wall if wall > 0 else 0.0, "sync": c,
                    "output": str(path), "written": dict(out.counts)})
    for d in pending_prompts:
        summary["prompts"].append({"entry": d, "accepted": False, "object_id": -1, "frame": None,
                                   "reason": "its frame/stamp was never reached"})
        log(f"prompt NOT APPLIED (its frame/stamp was never reached): {d}")
    return summary


def _lookup(tf, target, source, stamp_ns):
    from sam4d_ros.tf import TransformUnavailable

    try:
        return tf.lookup(target, source, stamp_ns)
    except TransformUnavailable as exc:
        raise LookupError(str(exc)) from None


def _pose(tf, odom, lidar, ns):
    try:
        return _lookup(tf, odom, lidar, ns)
    except LookupError:
        return None


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point (``argv`` without the program name); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="sam4d-process-bag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="input bag (.mcap/.db3 file or rosbag2 directory)")
    ap.add_argument("-o", "--output", required=True, help="output bag (X.mcap = one MCAP file, else a directory)")
    ap.add_argument("--prompts", help="prompts YAML (see above)")
    ap.add_argument("--config", help="node parameter YAML (topics, sync, model...)")
    ap.add_argument("--checkpoint", help="override the checkpoint parameter ('' embedded, path, random)")
    ap.add_argument("--device", help="override the device parameter")
    ap.add_argument("--no-copy-inputs", action="store_true", help="write only the output topics")
    ap.add_argument("--max-frames", type=int, default=0, help="stop after N processed frames")
    ap.add_argument("--direction", default="both", choices=("both", "forward"),
                    help="both: also propagate backward from each object's first prompted frame (default)")
    ap.add_argument("--export-semantickitti", metavar="DIR", help="also write SemanticKITTI .bin/.label files")
    ap.add_argument("--export-nuscenes", metavar="DIR", help="also write nuScenes-lidarseg .pcd.bin/_lidarseg.bin")
    ap.add_argument("--sequence", default="00", help="sequence name of the exports (default 00)")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.config)
        if args.checkpoint is not None:
            params["checkpoint"] = args.checkpoint
        if args.device is not None:
            params["device"] = args.device
        prompts = load_prompts(args.prompts)
        s = process_bag(args.input, args.output, prompts, params, copy_inputs=not args.no_copy_inputs,
                        max_frames=args.max_frames, direction=args.direction,
                        export_semantickitti=args.export_semantickitti, export_nuscenes=args.export_nuscenes,
                        sequence=args.sequence)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f"sam4d-process-bag: error: {exc}", file=sys.stderr)
        return 2
    inf = np.asarray(s["inference_s"]) if s["inference_s"] else np.zeros(1)
    print(f"processed {s['frames']} frames in {s['wall_s']:.1f} s ({s['fps']:.2f} fps; model p50 "
          f"{np.median(inf) * 1e3:.0f} ms); dropped {s['dropped']}; sync {s['sync']}")
    for oid, counts in sorted(s["objects"].items()):
        print(f"  object {oid}: tracked in {len(counts)} frames, median {int(np.median(counts))} points")
    print(f"wrote {s['output']}: {s['written']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
