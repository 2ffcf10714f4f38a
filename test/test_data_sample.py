# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The sample drive cache: deterministic, generated once, regenerated when incomplete."""

import json

import numpy as np

from sam4d_model.data import sample
from sam4d_model.data.rosbag_io import bag_info
from sam4d_model.data.waymo4dseg import read_sequence


def test_ensure_sample_drive(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "_sample_config", lambda: sample.sample_config_small())
    root = sample.ensure_sample_drive(tmp_path / "s", num_frames=2)
    stamp = json.loads((root / sample.STAMP_FILE).read_text())
    assert stamp["num_frames"] == 2 and stamp["seed"] == sample.SAMPLE_SEED
    seq = read_sequence(root, sample.SAMPLE_SEQ)
    assert len(seq) == 2 and seq.labels(0) is not None
    assert bag_info(root / sample.SAMPLE_BAG)["topics"]["/lidar/points"]["count"] == 2
    assert (root / sample.SAMPLE_BAG / "sample.mcap").exists()
    pts = seq.frame(1).points
    mtime = (root / sample.STAMP_FILE).stat().st_mtime_ns
    assert sample.ensure_sample_drive(root, num_frames=2) == root  # cached: nothing regenerated
    assert (root / sample.STAMP_FILE).stat().st_mtime_ns == mtime
    # a partial generation (no stamp) is redone, deterministically
    (root / sample.STAMP_FILE).unlink()
    (root / "meta_infos" / "sample.pkl").unlink()
    sample.ensure_sample_drive(root, num_frames=2)
    assert np.array_equal(read_sequence(root, sample.SAMPLE_SEQ).frame(1).points, pts)
    # environment override of the default location
    monkeypatch.setenv(sample.ENV_VAR, str(tmp_path / "env"))
    assert sample.default_sample_dir() == tmp_path / "env"
