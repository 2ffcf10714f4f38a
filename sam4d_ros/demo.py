# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The README's main command: the bundled sample drive through the running node over real DDS.

    python -m sam4d_ros.demo --out out/demo [--checkpoint PATH|random] [--rate 0.25] [--device auto]

1. Generates (first run) the bundled sample drive (``sam4d_model.data.sample.ensure_sample_drive``).
2. Starts the node (``python -m sam4d_ros.node``, a separate process, ``use_sim_time``) and replays the bag with
   :class:`sam4d_ros.bag_replay.BagReplayer` (``/clock`` included) at ``--rate`` times real time.
3. Prompts chosen from the ground truth of frame 0: the largest car via the ``~/add_prompts`` service (a LiDAR
   click on its point nearest its centroid), the second largest object via the service as an image click (the
   pixel of its image mask nearest the mask centroid), and the third largest via ``/clicked_point`` (its LiDAR
   centre point expressed in ``odom``, like RViz's Publish Point tool).
4. Records ``~/points``, ``~/mask``, ``~/overlay``, ``~/objects``, ``~/status``; prints per-object IoU against the
   drive's ground truth (LiDAR points and image pixels, on every processed frame after the prompt) and latency
   figures (wall time from the replayer publishing a cloud to receiving its labelled cloud); writes overlay PNGs
   and ``summary.json`` into ``--out``. Every number printed is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

NS = 1_000_000_000


def load_ground_truth(bag) -> dict:
    """Ground truth of a sample-drive bag: per-stamp point instances and image instances, object classes, TF."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    from sam4d_ros.bag_replay import read_bag
    from sam4d_ros.image import image_to_numpy
    from sam4d_ros.pointcloud import cloud_to_structured, read_cloud
    from sam4d_ros.tf import BufferTransformSource

    tf = BufferTransformSource(cache_time_s=3600.0)
    gt = {"points": {}, "xyz": {}, "image": {}, "classes": {}, "cloud_stamps": [], "tf": tf, "lidar_frame": ""}
    topics = ["/ground_truth/points", "/ground_truth/image_instance", "/ground_truth/objects", "/lidar/points",
              "/tf", "/tf_static"]
    for topic, _, _, raw in read_bag(bag, topics):
        if topic in ("/tf", "/tf_static"):
            tf.add_message(deserialize_message(raw, TFMessage), static=topic == "/tf_static")
        elif topic == "/ground_truth/points":
            m = deserialize_message(raw, PointCloud2)
            ns = _stamp_ns(m)
            arr = cloud_to_structured(m)
            gt["points"][ns] = np.asarray(arr["instance"], np.int64)
            gt["xyz"][ns] = read_cloud(m).xyz
        elif topic == "/ground_truth/image_instance":
            m = deserialize_message(raw, Image)
            gt["image"][_stamp_ns(m)] = image_to_numpy(m).astype(np.int64)
        elif topic == "/ground_truth/objects":
            gt["classes"].update({int(k): str(v) for k, v in json.loads(deserialize_message(raw, String).data).items()})
        elif topic == "/lidar/points":
            m = deserialize_message(raw, PointCloud2)
            gt["cloud_stamps"].append(_stamp_ns(m))
            gt["lidar_frame"] = m.header.frame_id
    return gt


def _is_static(gt: dict, gid: int, later: int = 8, tol: float = 2.5, min_points: int = 100) -> bool:
    """Whether the centroid of ``gid``'s points stays within ``tol`` m in odom from frame 0 to frame ``later``, with
    at least ``min_points`` points on every frame in between (not occluded when the click arrives).

    Its visible side changes, so the centroid moves up to ~2 m; a moving car covers 4+ m. A click in odom marks a
    place: on a moving object it is stale by the time the node applies it, so the demo clicks a static one.
    """
    stamps = gt["cloud_stamps"]
    k = min(later, len(stamps) - 1)
    cents = []
    for ns in stamps[:k + 1]:
        inst, xyz = _nearest(gt["points"], ns), _nearest(gt["xyz"], ns)
        if inst is None or int((inst == gid).sum()) < min_points:
            return False
        t = gt["tf"].lookup("odom", gt["lidar_frame"], ns)
        c = xyz[inst == gid].mean(0)
        cents.append(t[:3, :3] @ c + t[:3, 3])
    return bool(np.linalg.norm(cents[0] - cents[-1]) < tol)


def _stamp_ns(msg) -> int:
    """A message's header stamp in nanoseconds."""
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def _nearest(d: Dict[int, Any], ns: int, tol: int = 60_000_000) -> Optional[Any]:
    if not d:
        return None
    k = min(d, key=lambda s: abs(s - ns))
    return d[k] if abs(k - ns) <= tol else None


def choose_prompts(gt: dict) -> List[dict]:
    """Three objects of frame 0 by LiDAR size (cars first), visible in both sensors: a service LiDAR click, a
    service image click, and a ``/clicked_point`` click in odom. The odom click goes to the largest *static* object
    that stays in view (a click in odom marks a place), the service clicks to the largest of the others.
    """
    s0 = gt["cloud_stamps"][0]
    inst, xyz = _nearest(gt["points"], s0), _nearest(gt["xyz"], s0)
    img = _nearest(gt["image"], s0)
    ids, counts = np.unique(inst[inst > 0], return_counts=True)
    order = sorted(zip(ids.tolist(), counts.tolist()),
                   key=lambda ic: (gt["classes"].get(ic[0], "") not in ("car", "truck"), -ic[1]))
    order = [(i, c) for i, c in order if gt["classes"].get(i, "") not in ("building", "tree", "road", "vegetation")
             and img is not None and int((img == i).sum()) >= 400]  # visible in both sensors
    odom = next(((g, c) for g, c in order if _is_static(gt, g)), None)
    service = [(g, c) for g, c in order if odom is None or g != odom[0]][:2]
    chosen = []
    for role, (gid, cnt) in zip(("lidar", "image", "odom"), service + ([odom] if odom else [])):
        pts = xyz[inst == gid]
        centre = pts[np.argmin(np.linalg.norm(pts - pts.mean(0), axis=1))]
        entry = {"gt_id": int(gid), "class": gt["classes"].get(gid, "?"), "gt_points_frame0": int(cnt),
                 "lidar_point": centre.astype(float).tolist()}
        if role == "image":
            vv, uu = np.nonzero(img == gid)
            k = np.argmin((uu - uu.mean()) ** 2 + (vv - vv.mean()) ** 2)
            entry["pixel"] = [float(uu[k]), float(vv[k])]
            entry["how"] = f"service, image click at pixel ({uu[k]}, {vv[k]})"
        elif role == "lidar":
            entry["how"] = f"service, LiDAR click at {np.round(centre, 2).tolist()} (point nearest its centroid)"
        else:
            entry["how"] = "/clicked_point in odom (its LiDAR centre point, like RViz Publish Point)"
        chosen.append(entry)
    return chosen


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else float("nan")


def run_demo(out_dir: Path, checkpoint: str = "", device: str = "auto", rate: float = 0.25,
             sample_dir: Optional[str] = None, max_overlays: int = 8, node_threads: int = 0) -> dict:
    """Run the demo (see module docstring); returns the summary dict also written to ``summary.json``."""
    import cv2
    from geometry_msgs.msg import Point, PointStamped
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String

    from sam4d_model.data.sample import ensure_sample_drive
    from sam4d_ros.bag_replay import BagReplayer
    from sam4d_ros.image import image_to_numpy
    from sam4d_ros.msg import ObjectMasks, Prompt
    from sam4d_ros.pointcloud import labels_from_cloud
    from sam4d_ros.srv import AddPrompts, ListObjects
    from sam4d_ros.testing import RosHarness, node_process, stamp_msg, stop_process

    out_dir.mkdir(parents=True, exist_ok=True)
    t_setup = time.time()
    root = ensure_sample_drive(sample_dir, progress=True)
    bag = root / "sample"
    print(f"[demo] sample drive: {bag} (ready in {time.time() - t_setup:.1f} s)")
    gt = load_ground_truth(bag)
    prompts = choose_prompts(gt)
    print(f"[demo] {len(gt['cloud_stamps'])} frames; prompting {len(prompts)} objects of frame 0:")
    for i, p in enumerate(prompts):
        print(f"  object {i + 1}: GT instance {p['gt_id']} ({p['class']}, {p['gt_points_frame0']} LiDAR points) "
              f"via {p['how']}")

    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    params = {"use_sim_time": True, "checkpoint": checkpoint, "device": device, "status_period": 0.5,
              "points_reliability": "reliable", "image_reliability": "reliable", "sync_max_wait": 0.3,
              "log_period": 5.0}
    if node_threads:
        params["torch_threads"] = node_threads
    log_path = out_dir / "node.log"
    proc = node_process(params, log_path)
    h = RosHarness("sam4d_demo")
    summary: dict = {"prompts": prompts, "bag": str(bag), "rate": rate, "checkpoint": checkpoint or "embedded"}
    try:
        pts_out = h.collect(PointCloud2, "/sam4d/points")
        masks = h.collect(Image, "/sam4d/mask")
        overlays = h.collect(Image, "/sam4d/overlay")
        objects = h.collect(ObjectMasks, "/sam4d/objects")
        status = h.collect(String, "/sam4d/status")
        p_click = h.publisher(PointStamped, "/clicked_point")
        pub_wall: Dict[int, float] = {}
        first_cloud = threading.Event()
        go = threading.Event()

        def on_msg(topic, t, raw):
            if topic == "/lidar/points":
                pub_wall[t] = time.monotonic()
                if not first_cloud.is_set():
                    first_cloud.set()
                    go.wait(120)
            return raw

        replayer = BagReplayer(h.node, bag, rate=rate, topics=["/lidar/points", "/camera/image_raw",
                                                                "/camera/camera_info", "/tf", "/tf_static"],
                               filter_fn=on_msg)
        print("[demo] waiting for the node (model load) ...")
        ok = h.wait_for(lambda: proc.poll() is not None or (h.node.count_subscribers("/lidar/points") > 0
                                                            and h.node.count_publishers("/sam4d/points") > 0), 300)
        if proc.poll() is not None or not ok:
            raise RuntimeError(f"the node did not come up (exit code {proc.poll()}); see {log_path}:\n"
                               + log_path.read_text()[-3000:])
        # the bag's first CameraInfo comes after the first cloud: publish it first so image prompts validate
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CameraInfo

        from sam4d_ros.bag_replay import read_bag

        info = next(deserialize_message(raw, CameraInfo) for _, _, _, raw in read_bag(bag, ["/camera/camera_info"]))
        p_info = h.publisher(CameraInfo, "/camera/camera_info")
        h.wait_matched(p_info)
        for _ in range(20):
            p_info.publish(info)
            time.sleep(0.05)
            if h.wait_for(lambda: False, 0.0) or _node_has_camera_info(h):
                break
        stop = threading.Event()
        rep_thread = threading.Thread(target=lambda: replayer.run(stop), daemon=True)
        time.sleep(1.0)
        rep_thread.start()
        first_cloud.wait(60)
        # service prompts name frame 0's stamp: the node applies them to that frame
        s0 = gt["cloud_stamps"][0]
        req = AddPrompts.Request()
        for i, p in enumerate(prompts[:2]):
            pr = Prompt(object_id=i + 1)
            pr.header.stamp = stamp_msg(s0)
            if "pixel" in p:
                pr.modality = Prompt.MODALITY_IMAGE
                pr.positive_points = [Point(x=p["pixel"][0], y=p["pixel"][1])]
            else:
                pr.modality = Prompt.MODALITY_LIDAR
                x, y, z = p["lidar_point"]
                pr.positive_points = [Point(x=x, y=y, z=z)]
            req.prompts.append(pr)
        resp = h.call(AddPrompts, "/sam4d/add_prompts", req, timeout=30)
        print(f"[demo] add_prompts -> success={resp.success} ids={list(resp.object_ids)} reasons={list(resp.reasons)}")
        summary["service_response"] = {"success": resp.success, "object_ids": list(resp.object_ids),
                                       "reasons": list(resp.reasons)}
        go.set()
        ids_by_gt = {p["gt_id"]: (resp.object_ids[i] if i < len(resp.object_ids) else -1)
                     for i, p in enumerate(prompts[:2])}
        if len(prompts) > 2:  # RViz-style click in odom after the first cloud reached the node
            h.wait_for(lambda: len(pts_out) > 0, 120)
            T = _lidar_to_odom(bag, s0)
            q = T @ np.r_[np.asarray(prompts[2]["lidar_point"]), 1.0]
            click = PointStamped()
            click.header.frame_id = "odom"
            click.header.stamp = h.node.get_clock().now().to_msg()
            click.point.x, click.point.y, click.point.z = (float(v) for v in q[:3])
            lst0 = set(h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request()).object_ids)
            p_click.publish(click)
            h.wait_for(lambda: len(set(h.call(ListObjects, "/sam4d/list_objects",
                                              ListObjects.Request()).object_ids) - lst0) > 0, 10)
            new = set(h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request()).object_ids) - lst0
            ids_by_gt[prompts[2]["gt_id"]] = min(new) if new else -1
            print(f"[demo] /clicked_point -> object {ids_by_gt[prompts[2]['gt_id']]}")
        rep_thread.join()
        time.sleep(3.0)  # last frames
        stop.set()
        summary["ids_by_gt"] = {str(k): v for k, v in ids_by_gt.items()}
        summary.update(_evaluate(gt, prompts, ids_by_gt, pts_out, masks, pub_wall, labels_from_cloud, image_to_numpy))
        # overlays
        ov_dir = out_dir / "overlays"
        ov_dir.mkdir(exist_ok=True)
        step = max(1, len(overlays) // max_overlays)
        for i, (_, m) in enumerate(overlays[::step][:max_overlays]):
            cv2.imwrite(str(ov_dir / f"overlay_{i:02d}_{m.header.stamp.sec}_{m.header.stamp.nanosec:09d}.png"),
                        image_to_numpy(m)[:, :, ::-1])
        summary["overlays_written"] = min(len(overlays[::step]), max_overlays)
        shot = screenshot(overlays, pts_out, image_to_numpy)
        if shot is not None:
            cv2.imwrite(str(out_dir / "screenshot.png"), shot[:, :, ::-1])
            summary["screenshot"] = str(out_dir / "screenshot.png")
        summary["final_status"] = json.loads(status[-1][1].data) if status else None
        summary["objects_messages"] = len(objects)
        summary["received"] = {"points": len(pts_out), "mask": len(masks), "overlay": len(overlays),
                               "objects": len(objects), "status": len(status)}
        summary["layout"] = _layouts(pts_out, masks, overlays, objects, gt)
    finally:
        h.close()
        stop_process(proc)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    _print_summary(summary, out_dir)
    return summary


def screenshot(overlays, clouds, image_to_numpy) -> Optional[np.ndarray]:
    """The node's overlay image beside a bird's-eye view of its labelled cloud of the same frame (stamps within
    60 ms), for the frame with the most labelled points ahead (RGB); None when no overlay has a cloud.
    """
    import cv2

    from sam4d_model.eval.overlay import bev
    from sam4d_ros.pointcloud import labels_from_cloud, read_cloud

    by_stamp = {_stamp_ns(m): m for _, m in overlays}  # the overlay carries its image's stamp, the cloud its sweep's
    best = None
    for _, c in clouds:
        ov = _nearest(by_stamp, _stamp_ns(c))
        if ov is not None:
            xyz, ids = read_cloud(c).xyz, labels_from_cloud(c)[0]
            n = int(((ids >= 1) & (xyz[:, 0] > np.abs(xyz[:, 1]))).sum())  # ahead: the camera looks along +x
            if best is None or n > best[0]:
                best = (n, xyz, ids, ov)
    if best is None:
        return None
    _, xyz, ids, ov = best
    img = image_to_numpy(ov)[:, :, :3]
    top = bev(xyz, ids, extent=40.0, size=img.shape[0])
    cv2.putText(top, "labelled cloud, bird's-eye view (40 m)", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (255, 255, 255), 1)
    return np.concatenate([img, np.full((img.shape[0], 4, 3), 255, np.uint8), top], 1)


def _layouts(pts_out, masks, overlays, objects, gt) -> dict:
    """Stamps, frames, fields and sizes of the last message of each output (checked by the e2e test)."""
    out = {}
    if pts_out:
        m = pts_out[-1][1]
        out["points"] = {"frame_id": m.header.frame_id, "stamp": _stamp_ns(m),
                         "fields": [(f.name, f.offset, f.datatype) for f in m.fields], "width": m.width,
                         "height": m.height, "point_step": m.point_step,
                         "stamp_is_input": _stamp_ns(m) in gt["points"]}
    for name, lst in (("mask", masks), ("overlay", overlays)):
        if lst:
            m = lst[-1][1]
            ns = _stamp_ns(m)
            out[name] = {"frame_id": m.header.frame_id, "encoding": m.encoding, "width": m.width, "height": m.height,
                         "stamp_is_input": ns in gt["image"]}
    if objects:
        m = objects[-1][1]
        out["objects"] = {"frame_id": m.header.frame_id, "n": len(m.objects),
                          "stamp_is_input": _stamp_ns(m) in gt["points"]}
    return out


def _node_has_camera_info(h) -> bool:
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt
    from sam4d_ros.srv import AddPrompts

    # validation-only probe: an image prompt with a point far outside any image is rejected either because of the
    # missing CameraInfo or because it is outside the image, without creating an object
    pr = Prompt(object_id=0, modality=Prompt.MODALITY_IMAGE)
    pr.positive_points = [Point(x=-1.0, y=-1.0)]
    resp = h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(prompts=[pr]), timeout=10)
    return not any("CameraInfo" in r for r in resp.reasons)


def _lidar_to_odom(bag, stamp_ns: int) -> np.ndarray:
    from rclpy.serialization import deserialize_message
    from tf2_msgs.msg import TFMessage

    from sam4d_ros.bag_replay import read_bag
    from sam4d_ros.tf import BufferTransformSource

    tf = BufferTransformSource(cache_time_s=1e6)
    for topic, _, t, raw in read_bag(bag, ["/tf", "/tf_static"]):
        tf.add_message(deserialize_message(raw, TFMessage), static=topic == "/tf_static")
        if t > stamp_ns + NS:
            break
    return tf.lookup("odom", "lidar", stamp_ns)


def _evaluate(gt, prompts, ids_by_gt, pts_out, masks, pub_wall, labels_from_cloud, image_to_numpy) -> dict:
    per_obj = {}
    lat = []
    for t_recv, m in pts_out:
        ns = _stamp_ns(m)
        if ns in pub_wall:
            lat.append(t_recv - pub_wall[ns])
        inst = _nearest(gt["points"], ns, 1_000_000)
        if inst is None:
            continue
        labels = labels_from_cloud(m)[0]
        if len(labels) != len(inst):
            continue
        for gid, oid in ids_by_gt.items():
            if oid < 0:
                continue
            d = per_obj.setdefault(gid, {"lidar": [], "image": []})
            if (inst == gid).any():
                d["lidar"].append(_iou(labels == oid, inst == gid))
    for _, m in masks:
        ns = _stamp_ns(m)
        g = _nearest(gt["image"], ns, 1_000_000)
        if g is None:
            continue
        arr = image_to_numpy(m).astype(np.int64)
        for gid, oid in ids_by_gt.items():
            if oid >= 0 and (g == gid).any():
                per_obj.setdefault(gid, {"lidar": [], "image": []})["image"].append(_iou(arr == oid, g == gid))
    res = {"iou": {}, "frames_in_bag": len(gt["cloud_stamps"]), "frames_labelled": len(pts_out)}
    for p in prompts:
        d = per_obj.get(p["gt_id"], {"lidar": [], "image": []})
        res["iou"][str(p["gt_id"])] = {
            "object_id": ids_by_gt.get(p["gt_id"], -1), "class": p["class"], "how": p["how"],
            "lidar_iou_mean": float(np.nanmean(d["lidar"])) if d["lidar"] else None,
            "image_iou_mean": float(np.nanmean(d["image"])) if d["image"] else None,
            "frames_lidar": len(d["lidar"]), "frames_image": len(d["image"])}
    if lat:
        a = np.asarray(lat) * 1e3
        res["latency_ms"] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                             "max": float(a.max()), "n": int(a.size)}
    return res


def _print_summary(s: dict, out_dir: Path) -> None:
    print("\n[demo] ===== results (measured in this run) =====")
    print(f"checkpoint: {s['checkpoint']}; bag frames {s.get('frames_in_bag')}, labelled clouds received "
          f"{s.get('frames_labelled')} (replay rate {s['rate']}x; the node skips frames when slower)")
    for gid, r in (s.get("iou") or {}).items():
        li = "n/a" if r["lidar_iou_mean"] is None else f"{r['lidar_iou_mean']:.3f}"
        ii = "n/a" if r["image_iou_mean"] is None else f"{r['image_iou_mean']:.3f}"
        print(f"  object {r['object_id']:>2} = GT {gid} ({r['class']}), prompted via {r['how']}:\n"
              f"      LiDAR IoU {li} over {r['frames_lidar']} frames, image IoU {ii} over {r['frames_image']} frames")
    if "latency_ms" in s:
        lm = s["latency_ms"]
        print(f"latency (cloud published by the replayer -> labelled cloud received, wall): p50 {lm['p50']:.0f} ms, "
              f"p95 {lm['p95']:.0f} ms, max {lm['max']:.0f} ms over {lm['n']} frames")
    st = s.get("final_status") or {}
    if st:
        print(f"node status: processing p50 {st['processing_time_ms']['p50']} ms, counters {st['counters']}")
    print(f"overlays: {s.get('overlays_written', 0)} PNGs in {out_dir / 'overlays'}; "
          f"summary: {out_dir / 'summary.json'}")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m sam4d_ros.demo --out out/demo``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="sam4d_ros.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo", help="output folder")
    ap.add_argument("--checkpoint", default="", help="'' = embedded model, a path, or 'random' (numbers meaningless)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rate", type=float, default=0.25, help="replay speed factor")
    ap.add_argument("--sample-dir", default=None, help="where the sample drive is generated/cached")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_demo(Path(args.out), args.checkpoint, args.device, args.rate, args.sample_dir)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
