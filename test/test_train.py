# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Training: a real run resumes from its checkpoint; DDP (gloo, 2 CPU processes) keeps replicas equal; LoRA."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sam4d_model.config import load_config
from sam4d_model.data.synth import SynthDrive, sample_config
from sam4d_model.data.waymo4dseg import InMemorySequence
from sam4d_model.modeling import build_sam4d
from sam4d_model.training.lora import LoRALinear, add_lora, merge_lora
from sam4d_model.training.trainer import TrainConfig, sample_clip, train

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(width=160, height=120, beams=16, azimuths=256)


@pytest.fixture(scope="module")
def small_seq():
    d = SynthDrive(11, 4, sample_config(**SMALL))
    return InMemorySequence([(sf.frame, sf.labels) for sf in (d.render(i) for i in range(4))], "small")


def test_sample_clip_plans_prompts(small_seq):
    cfg = TrainConfig(clip_len=3, max_objects=3, max_points=500, min_pixels=10, min_points=5)
    plan = sample_clip([small_seq], cfg, np.random.default_rng(0))
    assert len(plan.frames) == 3 and 1 <= len(plan.obj_ids) <= 3 and plan.cond_frames[0] == 0
    assert all(f.points.shape[0] <= 500 for f in plan.frames)
    assert all(len(lab.point_instance) == f.points.shape[0] for f, lab in zip(plan.frames, plan.labels))
    for o in plan.obj_ids:
        assert plan.prompt_kind[o] in ("click", "box", "mask") and plan.prompt_modality[o] in ("image", "lidar", "both")


def test_sample_clip_frame_stride(small_seq):
    """``max_frame_stride``: clip frames are k frames apart (k <= the stride and what the drive's length allows)."""
    cfg = TrainConfig(clip_len=2, max_objects=1, min_pixels=10, min_points=5, max_frame_stride=3, lidar_yaw_aug=0)
    gaps = set()
    for seed in range(12):
        plan = sample_clip([small_seq], cfg, np.random.default_rng(seed))
        gaps.add(plan.frames[1].index - plan.frames[0].index)
    assert gaps == {1, 2, 3}
    cfg.clip_len = 3  # 4 frames hold a 3-frame clip at gap 1 only
    assert {np.diff([f.index for f in sample_clip([small_seq], cfg, np.random.default_rng(s)).frames]).max()
            for s in range(6)} == {1}


def test_train_runs_logs_and_resumes(small_seq, tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=2, clip_len=2, max_objects=2, max_points=3000,
                      min_pixels=10, min_points=5, save_every=1, log_every=1, prob_correct=1.0)
    final = train(cfg, [small_seq], progress=False)
    assert final.is_file() and (tmp_path / "run" / "last.pt").is_file()
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert st["step"] == 2
    cfg.steps = 3
    cfg.iou_loss = "mse"
    cfg.loss_weights = dict(cfg.loss_weights, weight_iou=3.0)
    train(cfg, [small_seq], progress=False)
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert st["step"] == 3
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["total"])) for r in rows)


def test_cli_rejects_unknown_loss_weight(tmp_path, capsys):
    from sam4d_model.tools import train as train_tool

    with pytest.raises(SystemExit) as e:
        train_tool.main(["--out", str(tmp_path), "--loss-weight", "weight_bogus=1"])
    assert e.value.code == 2 and "weight_iou" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_weights_equal(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}:{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sam4d_model.tools.train", "--out", str(tmp_path / "ddp"), "--synth-seeds", "12",
           "--synth-frames", "3", "--synth-size", "160x120", "--synth-cache", str(tmp_path / "cache"),
           "--steps", "2", "--clip-len", "2", "--max-points", "2000", "--min-pixels", "10", "--min-points", "5",
           "--device", "cpu", "--num-threads", "1", "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check = json.loads((tmp_path / "ddp" / "ddp_check.json").read_text())
    assert check["world_size"] == 2
    a, b = check["param_sums"]
    assert a == pytest.approx(b, rel=1e-9, abs=1e-6)


def test_lora_adapters_start_neutral_train_alone_and_merge():
    torch.manual_seed(0)
    m = build_sam4d(load_config("sam4d_tiny")).eval()
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        ref = m.image_encoder(x)["backbone_fpn"][-1]
    names = add_lora(m.image_encoder, rank=2)
    assert names and all(isinstance(m.image_encoder.get_submodule(n), LoRALinear) for n in names)
    trainable = [n for n, p in m.image_encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        out = m.image_encoder(x)["backbone_fpn"][-1]
        assert torch.allclose(out, ref, atol=1e-6)  # B = 0 at start
        for n in names:
            m.image_encoder.get_submodule(n).lora_b.normal_(std=0.05)
        changed = m.image_encoder(x)["backbone_fpn"][-1]
        assert not torch.allclose(changed, ref, atol=1e-4)
        assert merge_lora(m.image_encoder) == len(names)
        merged = m.image_encoder(x)["backbone_fpn"][-1]
    assert torch.allclose(merged, changed, atol=1e-4)
