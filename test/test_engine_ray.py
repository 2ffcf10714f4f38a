# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Sequences as Ray jobs (local Ray with 2 workers, 2 drives) give exactly the sequential result."""

import filecmp
import json

import pytest

from sam4d_model.engine import EngineConfig, GroundTruthSource
from sam4d_model.engine.jobs import Job, run_jobs
from sam4d_model.engine.testing import write_synthetic_layout

ray = pytest.importorskip("ray")


def test_ray_local_equals_sequential(tmp_path):
    root = tmp_path / "data"
    names = write_synthetic_layout(root, [3, 4], 8)

    def jobs(out):
        return [Job(str(root), n, str(out), GroundTruthSource(), EngineConfig(), evaluate=True) for n in names]

    seq_out, ray_out = tmp_path / "seq", tmp_path / "ray"
    a = run_jobs(jobs(seq_out), progress=False)
    b = run_jobs(jobs(ray_out), ray_address="local", num_workers=2, progress=False)
    assert [s["status"] for s in a] == [s["status"] for s in b] == ["done", "done"]
    assert [s["seq"] for s in b] == names
    for n in names:
        d = filecmp.dircmp(seq_out / "sam4d_labels" / n, ray_out / "sam4d_labels" / n)
        assert d.left_list == d.right_list and len(d.left_list) == 8
        _, mismatch, errors = filecmp.cmpfiles(d.left, d.right, d.left_list, shallow=False)
        assert not mismatch and not errors
        ra, rb = (json.loads((o / "sam4d_reports" / f"{n}.json").read_text()) for o in (seq_out, ray_out))
        assert ra["objects"] == rb["objects"] and ra["metrics"] == rb["metrics"]
    # the Ray output resumes like any other (skips finished sequences)
    c = run_jobs(jobs(ray_out), progress=False)
    assert [s["status"] for s in c] == ["skipped", "skipped"]
