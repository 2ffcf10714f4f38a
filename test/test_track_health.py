# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Track health (#16 item 8): events from masks over frames, the track confidence, and undo of the last prompt.

The rules on their own (:class:`sam4d_ros.health.TrackHealth`), undo in the real tracker with the embedded model,
and the node over real DDS: ``~/object_events`` (added, lost, reappeared, removed), ``confidence`` / ``lost`` in
``~/objects`` and ``~/undo_last_prompt``.
"""

from __future__ import annotations

import dataclasses
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest

from sam4d_ros.health import ADDED, LOST, REAPPEARED, REMOVED, TrackHealth


def _obj(oid, n, score=0.9):
    return SimpleNamespace(obj_id=oid, score=score, num_points=n, num_pixels=0)


def test_events_follow_the_mask_with_hysteresis():
    h = TrackHealth(lost_after=3, found_after=2)
    seq = [5, 5, 0, 0, 0, 0, 7, 0, 7, 7, 7]  # points of object 1 on each frame
    events = {}
    for t, n in enumerate(seq):
        for e in h.update(t, [_obj(1, n)]):
            events.setdefault(t, []).append(e.kind)
    # added on the first frame; lost after 3 empty frames; the single present frame (6) does not bring it back,
    # the second of two in a row (9) does
    assert events == {0: [ADDED], 4: [LOST], 9: [REAPPEARED]}
    assert not h.is_lost(1)
    assert h.removed(1, 11, "test").kind == REMOVED and h.removed(1, 12, "again") is None


def test_confidence_is_low_for_a_flickering_track():
    steady, flicker = TrackHealth(), TrackHealth()
    for t in range(20):
        steady.update(t, [_obj(1, 10, 0.8)])
        flicker.update(t, [_obj(1, 10 if t % 2 else 0, 0.95)])
    assert steady.confidence(1) == pytest.approx(0.8, abs=0.01)
    assert flicker.confidence(1) < 0.6 < steady.confidence(1)


# ------------------------------------------------------------------------------------------ undo in the tracker
@pytest.fixture(scope="module")
def tracker():
    from sam4d_model.checkpoint import load_checkpoint
    from sam4d_model.tools.common import EMBEDDED_CHECKPOINT
    from sam4d_model.tracker import StreamingTracker

    model, _ = load_checkpoint(EMBEDDED_CHECKPOINT)
    return StreamingTracker(model, max_objects=4, lidar_refine="components")


def _frame(t):
    from sam4d_ros.testing import tiny_frame

    return tiny_frame(num_points=1500, width=64, height=48, seed=t, index=t)


def test_undo_restores_the_memory_before_the_last_prompt(tracker):
    from sam4d_ros.testing import TINY_CLUSTER_CENTRES

    tracker.reset()
    c = np.array([TINY_CLUSTER_CENTRES[0]])
    tracker.add_prompt(1, lidar_points=c)
    for t in range(3):
        tracker.step(_frame(t))
    before = list(tracker._memories[1])
    seed = tracker._seed_world[1].copy()
    tracker.add_prompt(1, lidar_points=c + 0.3)  # a refinement
    tracker.step(_frame(3))
    assert tracker._memories[1] != before
    assert tracker.undo_last_prompt(1) == "reverted"
    assert [id(e) for e in tracker._memories[1]] == [id(e) for e in before]
    np.testing.assert_array_equal(tracker._seed_world[1], seed)
    # the first prompt created the object: undoing it removes the object
    assert tracker.undo_last_prompt(1) == "removed"
    assert 1 not in tracker.object_ids
    assert tracker.undo_last_prompt(1) == "nothing"


def test_undo_of_a_prompt_not_yet_applied(tracker):
    from sam4d_ros.testing import TINY_CLUSTER_CENTRES

    tracker.reset()
    tracker.add_prompt(2, lidar_points=np.array([TINY_CLUSTER_CENTRES[1]]))
    assert tracker.undo_last_prompt(2) == "removed" and 2 not in tracker.object_ids
    tracker.add_prompt(2, lidar_points=np.array([TINY_CLUSTER_CENTRES[1]]))
    tracker.step(_frame(0))
    n = len(tracker._memories[2])
    tracker.add_prompt(2, lidar_points=np.array([TINY_CLUSTER_CENTRES[1]]) + 0.2)
    assert tracker.undo_last_prompt(2) == "reverted" and len(tracker._memories[2]) == n
    tracker.step(_frame(1))
    assert not tracker._memories[2][-1].is_prompted  # the dropped prompt was never applied


# ------------------------------------------------------------------------------------------ the node over DDS
rclpy = pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def rig():
    pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
    pytest.importorskip("tf2_msgs.msg", reason="needs tf2_msgs (source install/setup.bash)")
    import torch
    from sensor_msgs.msg import PointCloud2

    from sam4d_model.data.synth import generate_drive, sample_config
    from sam4d_ros.msg import ObjectEvent, ObjectMasks
    from sam4d_ros.testing import NS, RosHarness, SensorPublishers

    torch.set_num_threads(2)
    os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid() + 7).randint(171, 199))
    cfg = sample_config(width=192, height=144, beams=16, azimuths=384)
    drive = list(generate_drive(3, 3, config=cfg))
    h = RosHarness()
    node = h.start_sam4d({"checkpoint": "random", "sync_max_wait": 0.3, "queue_size": 2, "tf_timeout": 0.05,
                          "max_points": 20000, "object_lost_frames": 3, "object_found_frames": 2})
    r = SimpleNamespace(h=h, node=node, frames=[f for f, _ in drive], labels=[lab for _, lab in drive], k=0,
                        t0=1_700_000_000 * NS, ns=NS)
    r.events = h.collect(ObjectEvent, "/sam4d/object_events")
    r.objects = h.collect(ObjectMasks, "/sam4d/objects")
    r.out = h.collect(PointCloud2, "/sam4d/points")
    r.pubs = SensorPublishers(h)
    yield r
    h.close()


def _send(r, frame):
    from sam4d_ros.testing import frame_messages

    r.k += 1
    ns = r.t0 + r.k * 100_000_000
    n = len(r.out)
    r.pubs.send(frame_messages(frame, ns))
    assert r.h.wait_for(lambda: len(r.out) > n, 30.0), f"no output for frame at {ns}"


def _kinds(r, oid):
    from sam4d_ros.health import KINDS

    return [KINDS[m.event] for _, m in r.events if m.object_id == oid]


def test_node_reports_added_lost_reappeared_and_confidence(rig):
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt
    from sam4d_ros.srv import AddPrompts

    lab = rig.labels[0].point_instance
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    car = ids[np.argmax(counts)]
    xyz = rig.frames[0].points[lab == car][:, :3]
    p = Prompt(object_id=0, modality=Prompt.MODALITY_LIDAR)
    p.positive_points = [Point(x=float(xyz[0, 0]), y=float(xyz[0, 1]), z=float(xyz[0, 2]))]
    resp = rig.h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(prompts=[p]))
    oid = int(resp.object_ids[0])
    assert resp.success and oid > 0
    f0 = rig.frames[0]
    near = np.linalg.norm(f0.points[:, :2] - xyz[:, :2].mean(0), axis=1) < 4.0
    gone = dataclasses.replace(f0, points=f0.points[~near])  # the car (and what is around it) disappears
    for f in [f0, f0] + [gone] * 3 + [f0, f0]:
        _send(rig, f)
    assert rig.h.wait_for(lambda: REAPPEARED in _kinds(rig, oid), 10.0), _kinds(rig, oid)
    assert _kinds(rig, oid) == [ADDED, LOST, REAPPEARED]
    lost = [m for _, m in rig.events if m.object_id == oid][1]
    assert "empty mask on 3 frames" in lost.reason
    per_frame = [next(o for o in m.objects if o.object_id == oid) for _, m in rig.objects
                 if any(o.object_id == oid for o in m.objects)]
    assert [o.lost for o in per_frame][-7:] == [False, False, False, False, True, True, False]
    conf = [o.confidence for o in per_frame][-7:]
    assert conf[4] < conf[1] and conf[6] > conf[4]  # falls while the car is gone, recovers after


def test_node_undo_last_prompt(rig):
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt
    from sam4d_ros.srv import AddPrompts, ListObjects, UndoLastPrompt

    p = Prompt(object_id=0, modality=Prompt.MODALITY_LIDAR)
    p.positive_points = [Point(x=8.0, y=2.0, z=0.0)]
    oid = int(rig.h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(prompts=[p])).object_ids[0])
    _send(rig, rig.frames[1])
    p.object_id = oid
    assert rig.h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(prompts=[p])).success
    _send(rig, rig.frames[2])
    undo = rig.h.call(UndoLastPrompt, "/sam4d/undo_last_prompt", UndoLastPrompt.Request(object_id=oid))
    assert undo.success, undo.message
    _send(rig, rig.frames[0])
    listed = rig.h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request())
    assert oid in list(listed.object_ids)
    assert list(listed.num_prompts)[list(listed.object_ids).index(oid)] == 1
    assert rig.h.call(UndoLastPrompt, "/sam4d/undo_last_prompt", UndoLastPrompt.Request(object_id=oid)).success
    _send(rig, rig.frames[1])
    assert rig.h.wait_for(lambda: REMOVED in _kinds(rig, oid), 10.0), _kinds(rig, oid)
    listed = rig.h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request())
    assert oid not in list(listed.object_ids)
    bad = rig.h.call(UndoLastPrompt, "/sam4d/undo_last_prompt", UndoLastPrompt.Request(object_id=oid))
    assert not bad.success and "unknown object" in bad.message


def test_process_bag_writes_the_same_events(tmp_path):
    """``sam4d-process-bag`` on a real bag: labels and the track-health events land in the output bag."""
    pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
    import yaml
    from rclpy.serialization import deserialize_message

    from sam4d_model.data.synth import generate_drive, sample_config
    from sam4d_ros.bag_replay import read_bag
    from sam4d_ros.msg import ObjectEvent
    from sam4d_ros.process_bag import main as process_main
    from sam4d_ros.testing import micro_model_config, write_frames_bag

    drive = list(generate_drive(3, 4, config=sample_config(width=192, height=144, beams=16, azimuths=384)))
    frames, labels = [f for f, _ in drive], [lab for _, lab in drive]
    bag = write_frames_bag(tmp_path / "in.mcap", frames)
    lab = labels[0].point_instance
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    click = frames[0].points[lab == ids[np.argmax(counts)]][0, :3]
    (tmp_path / "prompts.yaml").write_text(yaml.safe_dump({"prompts": [
        {"frame": 0, "object_id": 1, "modality": "lidar", "positive_points": [[float(v) for v in click]]}]}))
    cfg = micro_model_config(tmp_path / "micro.yaml", image_size=64)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"sam4d": {"ros__parameters": {"model_config": str(cfg)}}}))
    out = tmp_path / "out.mcap"
    assert process_main([str(bag), "-o", str(out), "--prompts", str(tmp_path / "prompts.yaml"), "--checkpoint",
                         "random", "--config", str(params), "--no-copy-inputs"]) == 0
    topics = [t for t, *_ in read_bag(out)]
    assert topics.count("/sam4d/points") == 4
    events = [deserialize_message(raw, ObjectEvent) for t, _, _, raw in read_bag(out) if t == "/sam4d/object_events"]
    assert [(e.object_id, e.event) for e in events][:1] == [(1, ObjectEvent.OBJECT_ADDED)]
