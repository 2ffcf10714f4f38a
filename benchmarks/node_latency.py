# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""End-to-end latency and sustained throughput of the running SAM4D node on the bundled sample drive.

Starts the node (``python -m sam4d_ros.node``, its own process, ``use_sim_time``), prompts objects of frame 0 via
the ``~/add_prompts`` service (LiDAR clicks chosen from the drive's ground truth, so the model really runs on every
frame), and replays the sample bag with :class:`sam4d_ros.bag_replay.BagReplayer` at ``--rate`` times real time.

* Latency: wall time from the replayer publishing a cloud to this process receiving its labelled ``~/points``
  (matched by header stamp; both ends are wall-clock, so it does not depend on the replay rate). The first frame
  (lazy initialisation) is shown apart and left out of the percentiles.
* Throughput: labelled clouds received per wall second between the first and the last one.
* Skipped frames: the node's own counters (``~/status``): clouds dropped because the worker was busy (``skipped``,
  newest wins), clouds without an image (``unpaired``), other drops (no CameraInfo yet, TF...), and clouds
  published but never answered. ``/clock`` keeps ticking after the replay so the node's sim-time timers run.

    python benchmarks/node_latency.py [--frames 20] [--rate 2.0] [--objects 2] [--checkpoint PATH|random]
                                      [--device cpu|cuda] [--config sam4d_small] [--threads N] [--json out.json]

``--checkpoint`` defaults to the embedded ``sam4d_tiny`` checkpoint when present, else ``random`` (a warning is
printed: masks are meaningless then, timings are still representative of the architecture). ``--config`` only
applies to ``random`` (a real checkpoint carries its config). GPU: ``--device cuda --config sam4d_small``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NS = 1_000_000_000


def cdr_stamp_ns(raw: bytes) -> int:
    """Header stamp of a serialised message whose first field is a ``std_msgs/Header`` (CDR, either endianness)."""
    endian = "<" if raw[1] == 1 else ">"
    sec, nsec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * NS + nsec


#: ~/status counters of clouds that were not processed (the node's sync and frame checks).
DROP_COUNTERS = ("sync_skipped", "sync_unpaired", "no_camera_info", "tf_unavailable", "bad_cloud", "bad_image",
                 "image_size_mismatch", "errors")


def dropped(status: dict) -> int:
    """Clouds the node dropped according to a ~/status message."""
    c = status.get("counters", {}) if status else {}
    return sum(int(c.get(k, 0)) for k in DROP_COUNTERS)


def percentiles(values, qs=(50, 95, 99)):
    """``{q: value}`` (nan when empty)."""
    a = np.asarray(values, float)
    return {q: float(np.percentile(a, q)) if a.size else float("nan") for q in qs}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--frames", type=int, default=0, help="replay only the first N clouds (0 = the whole drive)")
    ap.add_argument("--rate", type=float, default=2.0, help="replay speed factor (0 = as fast as possible)")
    ap.add_argument("--objects", type=int, default=2, help="objects prompted on frame 0 (1-3)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint path or 'random' (default: embedded if present)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--config", default="", help="model config for --checkpoint random (e.g. sam4d_small)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the node on CPU (0 = default)")
    ap.add_argument("--sample-dir", default=None, help="sample drive folder (default: the bundled one)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the node's last outputs")
    return ap.parse_args(argv)


def resolve_checkpoint(arg):
    """``(checkpoint parameter value, description)``; falls back to ``random`` with a warning."""
    from sam4d_ros.pipeline import embedded_checkpoint

    if arg:
        return arg, arg
    if embedded_checkpoint().is_file():
        return "", f"embedded ({embedded_checkpoint()})"
    print(f"WARNING: embedded checkpoint {embedded_checkpoint()} not found: using checkpoint:=random (randomly "
          f"initialised weights; timings are representative, masks are not)", file=sys.stderr, flush=True)
    return "random", "random (embedded checkpoint missing)"


def node_params(args, checkpoint) -> dict:
    """The node's parameters for this run."""
    params = {"use_sim_time": True, "checkpoint": checkpoint, "device": args.device,
              "points_reliability": "reliable", "image_reliability": "reliable", "camera_info_reliability": "reliable",
              "sync_max_wait": 0.3, "status_period": 0.5, "log_period": 5.0}
    if args.config:
        params["model_config"] = args.config
    if args.threads:
        params["torch_threads"] = args.threads
    return params


def run(args) -> dict:
    """Run the benchmark; returns the results (also printed)."""
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from sam4d_model.data.sample import ensure_sample_drive
    from sam4d_ros.bag_replay import BagReplayer
    from sam4d_ros.demo import choose_prompts, load_ground_truth
    from sam4d_ros.msg import Prompt
    from sam4d_ros.srv import AddPrompts
    from sam4d_ros.testing import RosHarness, node_process, stamp_msg, stop_process

    checkpoint, ck_desc = resolve_checkpoint(args.checkpoint)
    if args.config and checkpoint != "random":
        print(f"note: --config {args.config} is ignored with a real checkpoint (it carries its own config)")
    bag = ensure_sample_drive(args.sample_dir, progress=True) / "sample"
    gt = load_ground_truth(bag)
    prompts = choose_prompts(gt)[: max(1, args.objects)]
    n_clouds = len(gt["cloud_stamps"]) if args.frames <= 0 else min(args.frames, len(gt["cloud_stamps"]))
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(150, 230)))
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"sam4d_node_latency_{os.getpid()}.log"
    t_node = time.monotonic()
    proc = node_process(node_params(args, checkpoint), log_path)
    h = RosHarness("sam4d_node_latency")
    try:
        received, pub_wall, status = [], {}, []
        lock = threading.Lock()

        def on_points(m):
            t = time.monotonic()
            with lock:
                received.append((t, m.header.stamp.sec * NS + m.header.stamp.nanosec))

        h.node.create_subscription(PointCloud2, "/sam4d/points", on_points, 10)
        h.node.create_subscription(String, "/sam4d/status", lambda m: status.append(json.loads(m.data)), 10)
        sent = {"clouds": 0}
        stop = threading.Event()

        def on_msg(topic, t, raw):
            if topic == "/lidar/points":
                if sent["clouds"] >= n_clouds:
                    stop.set()
                    return None
                sent["clouds"] += 1
                pub_wall[cdr_stamp_ns(raw)] = time.monotonic()
            return raw

        rep = BagReplayer(h.node, bag, rate=args.rate, topics=["/lidar/points", "/camera/image_raw",
                                                               "/camera/camera_info", "/tf", "/tf_static"],
                          filter_fn=on_msg)
        rep.prime()  # static transforms first: a node still busy with discovery gets them when it matches
        up = h.wait_for(lambda: proc.poll() is not None or (h.node.count_subscribers("/lidar/points") > 0
                                                            and h.node.count_publishers("/sam4d/points") > 0), 300)
        if proc.poll() is not None or not up:
            raise RuntimeError(f"the node did not come up; see {log_path}:\n" + log_path.read_text()[-3000:])
        startup = time.monotonic() - t_node
        req = AddPrompts.Request()
        for i, p in enumerate(prompts):
            pr = Prompt(object_id=i + 1, modality=Prompt.MODALITY_LIDAR)
            pr.header.stamp = stamp_msg(gt["cloud_stamps"][0])
            pr.positive_points = [Point(x=float(p["lidar_point"][0]), y=float(p["lidar_point"][1]),
                                        z=float(p["lidar_point"][2]))]
            req.prompts.append(pr)
        # prompts before the first cloud (queued for frame 0's stamp), so that every frame runs the model
        resp = h.call(AddPrompts, "/sam4d/add_prompts", req, timeout=60)
        if not resp.success:
            raise RuntimeError(f"prompts rejected: {list(resp.reasons)}")
        missing = rep.wait_for_subscribers(30.0)  # discovery (/tf_static is published once, first)
        if missing:
            print(f"warning: no subscriber on {missing} after 30 s", file=sys.stderr)
        time.sleep(2.0)
        t_play = time.monotonic()
        rep.run(stop)
        play_s = time.monotonic() - t_play
        # drain: wait until every published cloud is answered or counted as dropped, or nothing moves for 30 s;
        # /clock keeps ticking (the node's timers, ~/status included, run on sim time)
        t_end, bag_end = time.monotonic(), rep.last_time_ns or 0
        speed = args.rate if args.rate > 0 else 1.0

        def tick():
            rep.send_clock(bag_end + int((time.monotonic() - t_end) * speed * NS))
            time.sleep(0.05)

        last_change, last_n = time.monotonic(), -1
        end = time.monotonic() + args.timeout
        while time.monotonic() < end:
            with lock:
                n = len(received)
            if n + dropped(status[-1] if status else {}) >= sent["clouds"] and n:
                break
            if n != last_n:
                last_change, last_n = time.monotonic(), n
            elif time.monotonic() - last_change > 30.0:
                break
            tick()
        n_status = len(status)
        while len(status) < n_status + 2 and time.monotonic() < end:  # a fresh ~/status with the final counters
            tick()
        final = status[-1] if status else {"counters": {}}
    finally:
        h.close()
        stop_process(proc)

    with lock:
        recv = sorted(received)
    lat = [(t - pub_wall[ns]) for t, ns in recv if ns in pub_wall]
    first_lat, steady = (lat[0], lat[1:]) if lat else (float("nan"), [])
    thr = (len(recv) - 1) / (recv[-1][0] - recv[0][0]) if len(recv) > 1 and recv[-1][0] > recv[0][0] else 0.0
    c = final.get("counters", {})
    res = {
        "device": args.device, "checkpoint": ck_desc, "config": args.config or "(checkpoint's / sam4d_tiny)",
        "rate": args.rate, "objects": len(prompts), "clouds_published": sent["clouds"], "labelled_received": len(recv),
        "skipped": int(c.get("sync_skipped", 0)), "unpaired": int(c.get("sync_unpaired", 0)),
        "other_drops": {k: int(c[k]) for k in DROP_COUNTERS[2:] if c.get(k)},
        "unanswered": sent["clouds"] - len(recv) - dropped(final),
        "first_frame_latency_ms": first_lat * 1e3,
        "latency_ms": {f"p{q}": v * 1e3 for q, v in percentiles(steady).items()},
        "latency_frames": len(steady),
        "throughput_fps": thr, "input_rate_fps": sent["clouds"] / play_s if play_s > 0 else float("nan"),
        "node_processing_p50_ms": (final.get("processing_time_ms") or {}).get("p50"),
        "node_startup_s": startup, "node_log": str(log_path),
    }
    return res


def print_table(r: dict) -> None:
    """The results as a small table."""
    lat = r["latency_ms"]
    rows = [
        ("device / checkpoint", f"{r['device']} / {r['checkpoint']}"),
        ("model config", r["config"]),
        ("replay rate, objects", f"{r['rate']}x, {r['objects']}"),
        ("clouds published / labelled", f"{r['clouds_published']} / {r['labelled_received']}"),
        ("skipped / unpaired / unanswered", f"{r['skipped']} / {r['unpaired']} / {r['unanswered']}"),
        ("other drops", ", ".join(f"{k} {v}" for k, v in r["other_drops"].items()) or "none"),
        ("latency p50 / p95 / p99 (ms)", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}"
                                         f"  ({r['latency_frames']} frames)"),
        ("first frame latency (ms)", f"{r['first_frame_latency_ms']:.1f}"),
        ("node processing p50 (ms)", f"{r['node_processing_p50_ms']}"),
        ("throughput (labelled clouds/s)", f"{r['throughput_fps']:.2f} (input {r['input_rate_fps']:.2f}/s)"),
        ("node start-up (s)", f"{r['node_startup_s']:.1f}"),
    ]
    w = max(len(k) for k, _ in rows)
    print("\nSAM4D node end-to-end (publish cloud -> labelled cloud received, wall clock)")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")


def main(argv=None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    res = run(args)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0 if res["labelled_received"] else 1


if __name__ == "__main__":
    sys.exit(main())
