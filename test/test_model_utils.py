# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Shared synthetic scenes for the model tests (imported by the other test_model_* files) + config tests."""

import numpy as np
import pytest
import torch

from sam4d_model.config import load_config
from sam4d_model.types import CameraFrame, Frame

# camera optical frame (x right, y down, z forward) -> LiDAR (x forward, y left, z up), small lever arm
CAM2LIDAR = np.array([[0, 0, 1, 0.3], [-1, 0, 0, 0.1], [0, -1, 0, -0.2], [0, 0, 0, 1]], dtype=np.float64)
K = np.array([[400.0, 0, 320], [0, 400.0, 192], [0, 0, 1]])


def make_cloud(n, seed=0, extent=30.0):
    """Ground ring plus a few boxes; (n, 4) float32 with intensity."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    ang = rng.uniform(-np.pi, np.pi, n)
    r = rng.uniform(2, extent, n)
    z = np.where(rng.random(n) < 0.7, rng.uniform(-1.75, -1.65, n), rng.uniform(-1.6, 1.0, n))
    return np.stack([r * np.cos(ang), r * np.sin(ang), z, rng.uniform(0, 1, n)], 1).astype(np.float32)


def make_frame(n=2000, seed=0, image=True, hw=(96, 160), pose=None, index=0):
    rng = np.random.default_rng(seed + 1000)
    cams = []
    if image:
        h, w = hw
        k = K.copy()
        k[0] *= w / 640.0
        k[1] *= h / 384.0
        cams.append(CameraFrame("cam0", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), k, CAM2LIDAR.copy()))
    return Frame(points=make_cloud(n, seed), cameras=cams, lidar2world=np.eye(4) if pose is None else pose,
                 index=index)


def test_configs_load_and_roundtrip():
    for name in ("sam4d_tiny", "sam4d_small"):
        cfg = load_config(name)
        assert load_config(cfg.to_dict()).to_dict() == cfg.to_dict()
    small = load_config("sam4d_small")
    assert small.num_depth_bins == 128 and small.image.image_size == 768 and small.d_model == 256
    assert small.lidar.encoder_blocks == [3, 4, 6, 3] and small.memory.num_layers == 4
    with pytest.raises(ValueError):
        load_config({"d_model": 128, "bogus": 1})
    with pytest.raises(FileNotFoundError):
        load_config("no_such_config")


def test_small_config_builds_with_paper_sizes():
    from sam4d_model.modeling import build_sam4d, count_parameters

    m = build_sam4d("sam4d_small")
    assert m.umpe.mlp[0].in_features == 384 and m.umpe.mlp[0].out_features == 1024 and m.umpe.mlp[2].out_features == 256
    assert m.image_encoder.trunk.channel_list == [768, 384, 192, 96]
    assert 30e6 < count_parameters(m) < 200e6
    assert torch.is_tensor(m.img_maskmem_tpos_enc) and m.img_maskmem_tpos_enc.shape[0] == 7


def test_checkpoints_without_newer_options_load_with_the_behaviour_they_were_trained_with(tmp_path):
    """A stored config that predates an option means its old behaviour; a new config stores every option."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from sam4d_model.checkpoint import load_checkpoint, save_checkpoint
    from sam4d_model.modeling import build_sam4d

    cfg = load_config("sam4d_tiny")
    cfg.umpe.mlp_layernorm, cfg.lidar.token_norm, cfg.decoder.point_interp = False, False, "nearest"
    cfg.image.token_norm = False
    path = save_checkpoint(build_sam4d(cfg), tmp_path / "old.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta["sam4d_config"])
    del old["umpe"]["mlp_layernorm"], old["lidar"]["token_norm"], old["decoder"]["point_interp"]
    del old["image"]["token_norm"]
    save_file(sd, str(path), metadata={**meta, "sam4d_config": json.dumps(old)})
    _, loaded = load_checkpoint(path)
    assert (loaded.umpe.mlp_layernorm, loaded.lidar.token_norm, loaded.decoder.point_interp) == (
        False, False, "nearest") and not loaded.image.token_norm
    new = load_config("sam4d_tiny")
    _, again = load_checkpoint(save_checkpoint(build_sam4d(new), tmp_path / "new.safetensors"))
    assert (again.umpe.mlp_layernorm, again.lidar.token_norm, again.decoder.point_interp) == (
        True, True, "trilinear") and again.image.token_norm
