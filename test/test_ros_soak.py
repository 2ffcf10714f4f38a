# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Soak: thousands of frames through the live node over real DDS, checking that nothing accumulates.

The node runs in this process (random-init tiny model with a 64 px image encoder: plumbing and resource use,
not mask quality) on a tiny synthetic frame (64x48 image, 2,000 points in two compact clusters) with two tracked
objects, re-prompted now and then. Frames are published in lock step, each as soon as the previous one's
``~/points`` came back (as fast as the node keeps up). After a warm-up of ``WARMUP`` frames: the process RSS grows by
less than ``RSS_GROWTH_MB``, the tracker's stored memories (from ``~/status``) stay within the configured bound,
and the median processing time of the last 200 frames is at most 1.5x that of frames 200-400 plus a small slack.

``SAM4D_SOAK_FRAMES`` (default 2000) sets the number of frames.
"""

import json
import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
pytest.importorskip("tf2_msgs.msg")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FRAMES = int(os.environ.get("SAM4D_SOAK_FRAMES", "2000"))
WARMUP = 200
RSS_GROWTH_MB = 50.0
SLOWDOWN = 1.5
SLACK_S = 0.02
MAX_PROMPTED, NUM_PAST = 2, 3
REPROMPT_EVERY = 500


class LastOnly:
    """A subscription that keeps only a count and the newest message (the soak must not hoard messages)."""

    def __init__(self, node, msg_type, topic):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.count, self.last, self.cond = 0, None, threading.Condition()
        node.create_subscription(msg_type, topic, self._cb, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))

    def _cb(self, msg):
        with self.cond:
            self.count += 1
            self.last = msg
            self.cond.notify_all()

    def wait(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.last is not None and pred(self.last), timeout)


def _lidar_prompt(obj_id, xyz):
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt

    p = Prompt(object_id=obj_id, modality=Prompt.MODALITY_LIDAR)
    p.positive_points = [Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))]
    return p


def test_soak(tmp_path):
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from sam4d_ros.srv import AddPrompts, ListObjects
    from sam4d_ros.testing import (
        TINY_CLUSTER_CENTRES,
        RosHarness,
        SensorPublishers,
        frame_messages,
        micro_model_config,
        tiny_frame,
    )

    assert FRAMES >= WARMUP + 400, f"SAM4D_SOAK_FRAMES must be >= {WARMUP + 400}"
    proc = psutil.Process()
    frame = tiny_frame(2000, 64, 48)
    t_start = time.monotonic()
    with RosHarness() as h:
        node = h.start_sam4d({
            "checkpoint": "random", "model_config": str(micro_model_config(tmp_path / "micro.yaml", 64)),
            "device": "cpu", "torch_threads": 1, "max_prompted_frames": MAX_PROMPTED, "num_past_frames": NUM_PAST,
            "status_period": 0.5, "log_period": 0.0, "diagnostics_period": 1.0})
        points = LastOnly(h.node, PointCloud2, "/sam4d/points")
        status = LastOnly(h.node, String, "/sam4d/status")
        pubs = SensorPublishers(h)
        resp = h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(
            prompts=[_lidar_prompt(0, TINY_CLUSTER_CENTRES[0]), _lidar_prompt(0, TINY_CLUSTER_CENTRES[1])]))
        assert resp.success and list(resp.object_ids) == [1, 2], resp

        t0 = time.time_ns()
        proc_times, rss, memories, lost = [], {}, [], 0
        for k in range(FRAMES):
            if k and k % REPROMPT_EVERY == 0:  # refine object 1: exercises the pruning of prompted memories
                r = h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(
                    prompts=[_lidar_prompt(1, TINY_CLUSTER_CENTRES[0] + 0.1)]))
                assert r.success, r
            ns = t0 + k * 100_000_000
            done = node.stats.frames
            pubs.send(frame_messages(frame, ns))
            sec, nsec = divmod(ns, 1_000_000_000)
            if not points.wait(lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) >= (sec, nsec), 20.0):
                lost += 1
                continue
            h.wait_for(lambda: node.stats.frames > done, 5.0, period=0.001)
            proc_times.append(node.stats.proc[-1])
            if k % 50 == 0 or k == WARMUP:
                rss[k] = proc.memory_info().rss / 2**20
            if k % 100 == 0 and status.last is not None:
                memories.append(json.loads(status.last.data)["tracker"])
        lst = h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request())
        final_status = json.loads(status.last.data)
    elapsed = time.monotonic() - t_start

    pt = np.asarray(proc_times)
    early = float(np.median(pt[WARMUP:WARMUP + 200]))
    late = float(np.median(pt[-200:]))
    growth = max(v for k, v in rss.items() if k >= WARMUP) - rss[WARMUP]
    stored = [m["stored_memories"] for m in memories if m["stored_memories"] is not None]
    bound = 2 * (MAX_PROMPTED + NUM_PAST)
    print(f"\nsoak: {FRAMES} frames in {elapsed:.1f} s ({FRAMES / elapsed:.1f} frames/s), lost {lost}; processing "
          f"median frames {WARMUP}-{WARMUP + 200}: {early * 1e3:.1f} ms, last 200: {late * 1e3:.1f} ms; RSS at "
          f"{WARMUP}: {rss[WARMUP]:.1f} MiB, growth after: {growth:.1f} MiB, end {rss[max(rss)]:.1f} MiB; "
          f"stored memories max {max(stored)} (bound {bound}), bytes {memories[-1]['memory_bytes']}")
    assert lost <= FRAMES // 100, f"{lost} frames got no output"
    assert list(lst.object_ids) == [1, 2] and min(lst.frames_tracked) >= FRAMES - lost - 5, lst
    assert final_status["counters"].get("errors", 0) == 0, final_status
    assert growth < RSS_GROWTH_MB, rss
    assert stored and max(stored) <= bound, memories
    assert max(m["memory_bytes"] for m in memories[3:]) <= 1.5 * memories[3]["memory_bytes"], memories
    assert late <= SLOWDOWN * early + SLACK_S, (early, late)
