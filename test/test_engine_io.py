# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Data engine I/O: sam4d-label CLI on a layout, labels read back, resume, atomic output, mask-file source."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sam4d_model.data.waymo4dseg import read_sequence
from sam4d_model.engine import EngineConfig, FileMaskSource, GroundTruthSource, label_sequence, write_mask_files
from sam4d_model.engine import writer as engine_writer
from sam4d_model.engine.masklets import load_prompts
from sam4d_model.engine.sources import Sam2VideoSource
from sam4d_model.engine.testing import write_synthetic_layout
from sam4d_model.tools import label as label_tool

FRAMES = 12


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    names = write_synthetic_layout(root, [7], FRAMES)
    return root, names[0]


def _run(args):
    return label_tool.main([str(a) for a in args] + ["--no-progress"])


def test_cli_writes_readable_layout_and_resumes(layout, tmp_path, capsys):
    root, seq = layout
    out = tmp_path / "out"
    assert _run([root, "--source", "gt", "--out", out, "--evaluate", "--baseline"]) == 0
    line = capsys.readouterr().out
    assert f"{seq}: status=done" in line and "ours_covered_miou=" in line
    rep = json.loads((out / "sam4d_reports" / f"{seq}.json").read_text())
    assert rep["num_frames"] == FRAMES and rep["objects"] and rep["metrics"]["ours"]["covered"]["mean_iou"] > 0.7
    assert "Hungarian" in rep["evaluation_protocol"]
    # the output root is a readable layout whose labels are the pseudo-labels
    pseudo = read_sequence(out, seq)
    src = read_sequence(root, seq)
    assert len(pseudo) == FRAMES
    f = src.frame(3)
    lab = pseudo.labels(3)
    assert lab.point_instance.shape == (f.num_points,)
    assert set(np.unique(lab.point_instance).tolist()) - {0, -1} <= {o["object_id"] for o in rep["objects"]}
    assert lab.image_instance["FRONT"].shape == f.cameras[0].image.shape[:2]
    raw = json.loads((out / "sam4d_labels" / seq / f"{src.timestamp_us(3)}.json").read_text())
    scores = {o["object_id"]: o["score"] for o in rep["objects"]}
    for o in raw["sensors"]["LiDAR_TOP"]["objects"]:
        assert o["object_id"] == -1 or o["score"] == scores[o["object_id"]]
    # same result as the library call
    res = label_sequence(src, GroundTruthSource(), EngineConfig())
    assert np.array_equal(res.point_labels[3], lab.point_instance)
    # resume: finished sequences are skipped; --overwrite redoes them
    mtime = (out / "sam4d_reports" / f"{seq}.json").stat().st_mtime_ns
    assert _run([root, "--source", "gt", "--out", out, "--evaluate", "--baseline"]) == 0
    assert "status=skipped" in capsys.readouterr().out
    assert (out / "sam4d_reports" / f"{seq}.json").stat().st_mtime_ns == mtime
    # other settings -> redone
    assert _run([root, "--source", "gt", "--out", out, "--set", "label_frac=0.5"]) == 0
    assert "status=done" in capsys.readouterr().out


def test_interrupted_write_leaves_no_partial_labels(layout, tmp_path, monkeypatch):
    root, seq = layout
    out = tmp_path / "out"
    real = engine_writer.frame_label_json

    def boom(res, t):
        if t == 5:
            raise KeyboardInterrupt
        return real(res, t)

    monkeypatch.setattr(engine_writer, "frame_label_json", boom)
    assert _run([root, "--source", "gt", "--out", out]) == 130
    assert not (out / "sam4d_labels" / seq).exists()
    assert not (out / "sam4d_reports" / f"{seq}.json").exists()
    assert not any(p.name.endswith(".json") for p in out.rglob("*"))
    monkeypatch.setattr(engine_writer, "frame_label_json", real)
    assert _run([root, "--source", "gt", "--out", out]) == 0
    assert len(list((out / "sam4d_labels" / seq).glob("*.json"))) == FRAMES


def test_in_place_refuses_to_replace_foreign_labels(layout, tmp_path):
    root, seq = layout
    assert _run([root, "--source", "gt"]) == 1  # ground-truth labels are there: needs --overwrite


def test_mask_file_source_roundtrip(layout, tmp_path):
    root, seq = layout
    s = read_sequence(root, seq)
    write_mask_files(tmp_path / "masks", s, GroundTruthSource())
    a = label_sequence(s, GroundTruthSource(), EngineConfig())
    b = label_sequence(s, FileMaskSource(tmp_path / "masks"), EngineConfig())
    for t in range(FRAMES):
        assert np.array_equal(a.point_labels[t], b.point_labels[t])
    assert [o["semantic"] for o in a.objects.values()] == [o["semantic"] for o in b.objects.values()]


def test_sam2_source_plumbing(layout, tmp_path):
    """The SAM2 source with a stand-in predictor (a random sam2 model takes ~70 s for 3 frames on CPU)."""
    root, seq = layout
    s = read_sequence(root, seq)

    class FakeSam2:
        def init_state(self, video_path):
            import os
            return {"n": len(os.listdir(video_path)), "prompts": {}}

        def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
            state["prompts"][obj_id] = box if box is not None else np.r_[points[0] - 5, points[0] + 5]

        def propagate_in_video(self, state, start_frame_idx=0, reverse=False):
            import torch
            frames = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state["n"])
            for fi in frames:
                logits = torch.full((len(state["prompts"]), 1, 240, 320), -10.0)
                for j, (_, b) in enumerate(sorted(state["prompts"].items())):
                    x0, y0, x1, y1 = (int(v) for v in b)
                    logits[j, 0, y0:y1, x0:x1] = 10.0
                yield fi, sorted(state["prompts"]), logits

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"FRONT": {"2": [{"obj_id": 1, "box": [10, 20, 60, 80], "category": "car"},
                                                   {"obj_id": 2, "points": [[200, 100]], "labels": [1]}]}}))
    src = Sam2VideoSource(prompts=str(prompts), predictor=FakeSam2())
    src.prepare(s, ["FRONT"])
    f = s.frame(0)
    fm = src.masks(s, 0, f)["FRONT"]  # reverse propagation reaches frame 0
    assert fm.object_ids == [1, 2] and fm.ids[50, 30] == 1 and fm.ids[100, 200] == 2 and fm.categories == {1: "car"}
    assert set(load_prompts(prompts)["FRONT"]) == {2}


def test_sam4d_source_runs_the_embedded_model(layout, tmp_path):
    """``--source sam4d``: our predictor's image branch as the masklet source, end to end through the CLI."""
    root, seq = layout
    s = read_sequence(root, seq)
    gt = s.labels(4).image_instance["FRONT"]
    ids, counts = np.unique(gt[gt > 0], return_counts=True)
    big = int(ids[counts.argmax()])
    ys, xs = np.nonzero(gt == big)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"FRONT": {"4": [
        {"obj_id": 3, "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]},
        {"obj_id": 8, "points": [[float(xs.mean()), float(ys.mean())]], "labels": [1]}]}}))
    out = tmp_path / "out"
    assert _run([root, "--source", "sam4d", "--sam4d-checkpoint", "default", "--prompts", prompts,
                 "--out", out]) == 0
    labelled = read_sequence(out, seq)
    assert len(labelled) == FRAMES
    for t in range(FRAMES):
        assert labelled.labels(t).point_instance.shape == (s.frame(t).num_points,)
    report = json.loads(next((out / "sam4d_reports").glob("*.json")).read_text())
    assert report["fingerprint"]["source"] == {"name": "sam4d", "num_prompts": 2}
    assert report["stats"]["masklets"] == 2  # one per prompted object, propagated over the drive
    assert report["num_objects"] >= 1


def test_help():
    r = subprocess.run([sys.executable, "-m", "sam4d_model.tools.label", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--ray" in r.stdout and "SEQ_DIR" in r.stdout.upper()
