# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Streaming: 500 frames with 3 objects keep memory bounded."""

import gc

import numpy as np
import pytest
import torch
from test_model_utils import make_frame

from sam4d_model.config import load_config
from sam4d_model.modeling import build_sam4d
from sam4d_model.tracker import StreamingTracker


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_500_frames_bounded_memory():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    cfg = load_config("sam4d_tiny").to_dict()
    # same code paths, narrower numbers (4x4 image tokens, d=64): keeps 500 frames affordable on 2 CPU cores
    cfg["image"]["image_size"] = 64
    cfg["d_model"] = 64
    cfg["memory"].update(mem_dim=64, dim_feedforward=128, mask_downsampler_channels=[4, 8, 16, 32])
    cfg["decoder"].update(mlp_dim=128, iou_head_hidden_dim=64, num_heads=2)
    cfg["lidar"].update(stem_channels=8, encoder_channels=[8, 16, 32, 64], decoder_channels=[32, 16])
    model = build_sam4d(load_config(cfg))
    tr = StreamingTracker(model, max_prompted_frames=2, num_past_frames=3)
    frames = [make_frame(n=300, seed=s, hw=(48, 64)) for s in range(5)]
    bound = 3 * (2 + 3)
    counts, nbytes, rss = [], [], {}
    for t in range(500):
        if t == 0:
            for oid in (1, 2, 3):
                tr.add_prompt(oid, lidar_points=[[5.0 + oid, 0.0, -1.0]], image_points=[[10 * oid, 20]])
        elif t % 60 == 0:  # corrections keep creating prompted frames: their number must stay capped
            tr.add_prompt(2, lidar_points=[[6.0, 0.5, -1.0]], lidar_labels=[0])
        if t == 250:
            assert tr.remove_object(3)
        if t == 260:
            tr.add_prompt(3, image_box=[5, 5, 30, 30])
        fr = frames[t % len(frames)]
        fr.index = t
        res = tr.step(fr)
        assert len(res.obj_ids) == (2 if 250 <= t < 260 else 3)
        counts.append(tr.num_stored_memories)
        nbytes.append(tr.memory_bytes)
        if t in (150, 499):
            gc.collect()
            rss[t] = _rss_bytes()
    assert max(counts) <= bound
    assert counts[-1] == 13  # objects 1 and 3: 1 prompted + 3 past; object 2 (corrected): 2 prompted + 3 past
    assert max(nbytes[100:]) <= max(nbytes[20:100]) * 1.01
    assert rss[499] - rss[150] < 64 * 2 ** 20, (rss[499] - rss[150]) / 2 ** 20
    for oid in (1, 2, 3):
        prompted = [e for e in tr._memories[oid] if e.is_prompted]
        assert 1 <= len(prompted) <= 2
    if torch.cuda.is_available():  # pragma: no cover - CPU CI
        assert torch.cuda.memory_allocated() < 2 ** 30
    assert np.isfinite(res.point_scores).all()
