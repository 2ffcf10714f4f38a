# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Cross-modal prompting, the training loss, checkpoints, SAM2 initialisation and the clip predictor."""

import numpy as np
import pytest
import torch
from test_model_utils import make_frame

from sam4d_model.checkpoint import CheckpointError, load_checkpoint, load_sam2_weights, save_checkpoint
from sam4d_model.config import load_config
from sam4d_model.losses import sam4d_loss
from sam4d_model.modeling import ObjectPrompt, build_sam4d
from sam4d_model.predictor import SAM4DPredictor


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return build_sam4d(load_config("sam4d_tiny"))


def _run(model, feats, prompt):
    with torch.inference_mode():
        return model(feats, [[]], [prompt], store_memory=False, multimask=True)


def test_cross_modal_prompting(model):
    with torch.inference_mode():
        feats = model.encode_frame(make_frame(n=2000, seed=1))
    base = _run(model, feats, None)
    lid = _run(model, feats, ObjectPrompt(pts_points=torch.tensor([[8.0, 1.0, -1.0]]), pts_labels=torch.tensor([1])))
    img = _run(model, feats, ObjectPrompt(img_points={0: (torch.tensor([[100.0, 120.0]]), torch.tensor([1]))}))
    # a LiDAR-only prompt changes the image decoder output, an image-only prompt the LiDAR decoder output
    assert (lid.img_logits_all - base.img_logits_all).abs().max() > 1e-3
    assert (img.pts_logits_all - base.pts_logits_all).abs().max() > 1e-3
    # and both change their own modality
    assert (lid.pts_logits_all - base.pts_logits_all).abs().max() > 1e-3
    assert (img.img_logits_all - base.img_logits_all).abs().max() > 1e-3


@pytest.mark.filterwarnings("ignore:spconv has no CPU backward")
def test_one_optimisation_step_reduces_loss():
    torch.manual_seed(0)
    m = build_sam4d(load_config("sam4d_tiny"))  # eval(): BN running stats, no dropout -> deterministic
    feats = m.encode_frame(make_frame(n=1500, seed=2))
    prompt = ObjectPrompt(pts_points=torch.tensor([[8.0, 1.0, -1.0]]), pts_labels=torch.tensor([1]),
                          img_points={0: (torch.tensor([[100.0, 120.0]]), torch.tensor([1]))})
    h = m.image_size // 16
    img_t = torch.zeros(1, 1, 4 * h, 4 * h)
    img_t[..., 20:50, 30:70] = 1
    pts_t = (feats.pyr.xyz[:, 0] > 8).float()[None]

    def loss_value():
        out = m(feats, [[]], [prompt], store_memory=False)
        return sam4d_loss(out, img_t, pts_t)

    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    l0 = loss_value()
    for key in ("img_focal", "img_dice", "img_iou", "img_obj", "pts_focal", "pts_dice", "pts_iou", "pts_obj"):
        assert torch.isfinite(l0[key])
    opt.zero_grad()
    l0["total"].backward()
    assert m.image_encoder.trunk.patch_embed.proj.weight.grad is not None
    assert m.memory_attention.layers[0].linear1.weight.grad is not None
    opt.step()
    with torch.no_grad():
        l1 = loss_value()
    assert l1["total"].item() < l0["total"].item()


def _memory_effect(token_norm: bool, scale: float):
    """Relative change of the memory-conditioned (LiDAR, image) tokens with a memory vs without, with the image
    features scaled by ``scale`` (CPU training grew them to a mean |x| of ~85)."""
    torch.manual_seed(0)
    cfg = load_config("sam4d_tiny")
    cfg.image.token_norm = token_norm
    m = build_sam4d(cfg)
    enc = m.image_encoder.forward

    def scaled(x):
        out = enc(x)
        out["backbone_fpn"] = [f * scale for f in out["backbone_fpn"]]
        return out

    m.image_encoder.forward = scaled
    prompt = ObjectPrompt(pts_points=torch.tensor([[8.0, 1.0, -1.0]]), pts_labels=torch.tensor([1]))
    with torch.inference_mode():
        mem = m(m.encode_frame(make_frame(n=1500, seed=3), frame_idx=0), [[]], [prompt]).new_memory
        f1 = m.encode_frame(make_frame(n=1500, seed=4), frame_idx=1)
        img_a, pts_a = m.condition_on_memory(f1, [mem])
        img_b, pts_b = m.condition_on_memory(f1, [[]])
    return (((pts_a - pts_b).abs().mean() / pts_a.abs().mean()).item(),
            ((img_a - img_b).abs().mean() / img_a.abs().mean()).item())


def test_memory_still_matters_when_image_features_grow():
    normed = _memory_effect(True, 100.0)
    assert min(normed) > 0.1 and normed == pytest.approx(_memory_effect(True, 1.0), rel=0.05)
    # without the image-token LayerNorm (checkpoints before it) the image queries stop seeing their memory
    assert _memory_effect(False, 100.0)[1] < 0.2 * _memory_effect(False, 1.0)[1]


def test_iou_loss_l1_or_mse():
    from sam4d_model.modeling.sam4d import StepOutput

    logits = torch.full((1, 4, 10), -5.0)
    logits[0, 0, :4] = 5.0  # single-mask output: 4 points, target has 5 -> actual IoU 0.8
    out = StepOutput(pts_logits_all=logits, pts_iou_all=torch.tensor([[0.5, 0.0, 0.0, 0.0]]),
                     pts_obj=torch.tensor([3.0]), multimask=torch.tensor([False]))
    target = torch.zeros(1, 10)
    target[0, :5] = 1
    l1 = sam4d_loss(out, None, target)["pts_iou"]
    mse = sam4d_loss(out, None, target, iou_loss="mse")["pts_iou"]
    assert l1.item() == pytest.approx(0.3) and mse.item() == pytest.approx(0.09)
    with pytest.raises(ValueError, match="iou_loss"):
        sam4d_loss(out, None, target, iou_loss="huber")


def test_checkpoint_roundtrip_and_errors(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors.yaml").is_file()
    m2, cfg = load_checkpoint(path, "cpu")
    assert cfg.to_dict() == model.cfg.to_dict()
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    # .pt with weights_only
    m3, _ = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"))
    assert torch.equal(m3.no_obj_ptr, model.no_obj_ptr)
    # wrong config -> clear error listing shape mismatches
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(path, config="sam4d_small")
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    sd.pop("no_obj_ptr")
    sd["bogus.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys.*no_obj_ptr"):
        load_checkpoint(tmp_path / "bad.safetensors", config=model.cfg)
    with pytest.raises(CheckpointError, match="unexpected keys.*bogus"):
        load_checkpoint(tmp_path / "bad.safetensors", config=model.cfg)


def test_init_from_sam2_checkpoint(tmp_path):
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    sam2 = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval")
    torch.save({"model": sam2.state_dict()}, tmp_path / "sam2.1_hiera_tiny.pt")
    cfg = load_config("sam4d_tiny").to_dict()
    cfg.update(d_model=256)
    cfg["image"].update(embed_dim=96, stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9], window_spec=[8, 4, 14, 7])
    cfg["memory"].update(mem_dim=256)
    m = build_sam4d(load_config(cfg))
    rep = load_sam2_weights(m, tmp_path / "sam2.1_hiera_tiny.pt")
    sd2 = sam2.state_dict()
    own = m.state_dict()
    assert torch.equal(own["image_encoder.encoder.trunk.blocks.3.attn.qkv.weight"],
                       sd2["image_encoder.trunk.blocks.3.attn.qkv.weight"])
    assert torch.equal(own["image_encoder.encoder.neck.convs.0.conv.weight"],
                       sd2["image_encoder.neck.convs.0.conv.weight"])
    assert torch.equal(own["mask_decoder.transformer.layers.0.self_attn.q_proj.weight"],
                       sd2["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight"])
    assert any(k.startswith("image_prompt_encoder.") for k in rep["loaded"])
    assert len(rep["loaded"]) > 200
    # a config whose Hiera does not match is rejected with a clear error
    with pytest.raises(CheckpointError, match="image encoder"):
        load_sam2_weights(build_sam4d("sam4d_tiny"), tmp_path / "sam2.1_hiera_tiny.pt")


def test_predictor_clip_api(model):
    frames = [make_frame(n=800, seed=i, index=i) for i in range(4)]
    pred = SAM4DPredictor(model)
    state = pred.init_state(frames)
    res = pred.add_prompts(state, 1, obj_id=3, lidar_points=[[6.0, 0.0, -1.0]])
    assert res.obj_ids == [3] and res.point_masks.shape == (1, 800)
    pred.add_prompts(state, 2, obj_id=4, image_box=[10, 10, 80, 60], return_result=False)
    seen = []
    for fi, r in pred.propagate(state):
        seen.append((fi, r.obj_ids))
        assert r.point_masks.shape[1] == 800 and r.image_masks[0].shape[1:] == (96, 160)
    assert seen == [(1, [3]), (2, [3, 4]), (3, [3, 4])]
    back = [fi for fi, _ in pred.propagate(state, reverse=True)]
    assert back == [2, 1, 0]
    np.testing.assert_equal(len(state.obj_ids), 2)


def test_pooled_lidar_memory_stores_cell_means_and_tracks():
    """memory.lidar_pool 2: each stored LiDAR memory token is the mean of one 2x2x2 cell of stride-16 tokens."""
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    cfg = load_config("sam4d_tiny")
    cfg.memory.lidar_pool = 2
    m = build_sam4d(cfg)
    frames = [make_frame(n=4000, seed=s, index=s) for s in range(3)]
    tr = StreamingTracker(m, max_objects=1)
    tr.add_prompt(1, lidar_points=[frames[0].points[0, :3]])
    for f in frames:
        res = tr.step(f)
        assert res.point_masks.shape == (1, len(f.points))
    e = tr._memories[1][-1]
    with torch.inference_mode():
        feats = m.encode_frame(frames[-1])
    coarse = feats.pyr.level(16).coords // 2
    cells, inv = torch.unique(coarse, dim=0, return_inverse=True)
    assert e.pts_mem.shape[0] == e.pts_xyz.shape[0] == cells.shape[0] < feats.pts_xyz.shape[0]
    want = torch.stack([feats.pts_xyz[inv == c].mean(0) for c in range(cells.shape[0])])
    torch.testing.assert_close(e.pts_xyz, want)
    with pytest.raises(ValueError, match="lidar_pool"):
        cfg.memory.lidar_pool = 3
        cfg.validate()
