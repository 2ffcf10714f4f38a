# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Mask decoder shared by both modalities: one SAM2 two-way transformer, per-modality upsampling heads.

Output tokens: object score, IoU, 1 + 3 masks. Image masks are upsampled by transposed convolutions with
stride-8/4 skips (SAM2 layout and parameter names); LiDAR masks by kernel-2 sparse transposed convolutions
with stride-8/4 voxel skips, then each point takes the logit of its stride-4 voxel.
"""

from __future__ import annotations

from typing import Dict

import torch
from sam2.modeling.sam.transformer import TwoWayTransformer
from sam2.modeling.sam2_utils import MLP, LayerNorm2d
from torch import nn

from ..config import SAM4DConfig
from ..geometry import VoxelPyramid
from .lidar_encoder import SparseUp2x
from .prompt_encoder import token_norm


class SAM4DMaskDecoder(nn.Module):
    """Two-way transformer decoder with an image head and a LiDAR head."""

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        d = cfg.d_model
        dc = cfg.decoder
        self.transformer = TwoWayTransformer(depth=dc.depth, embedding_dim=d, mlp_dim=dc.mlp_dim,
                                             num_heads=dc.num_heads)
        self.num_mask_tokens = dc.num_multimask_outputs + 1
        self.point_interp = dc.point_interp
        self.obj_score_token = nn.Embedding(1, d)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.iou_prediction_head = MLP(d, dc.iou_head_hidden_dim, self.num_mask_tokens, dc.iou_head_depth,
                                       sigmoid_output=True)
        self.pred_obj_score_head = MLP(d, d, 1, 3)
        # image head (SAM2 names)
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList([MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens)])
        # LiDAR head
        self.pts_up1 = SparseUp2x(d, d // 4)
        self.pts_norm1 = token_norm(dc.lidar_norm, d // 4)
        self.pts_up2 = SparseUp2x(d // 4, d // 8)
        self.act = nn.Identity() if dc.lidar_head_act == "identity" else nn.GELU()
        self.pts_hypernetworks_mlps = nn.ModuleList([MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens)])
        self.stability_delta = dc.dynamic_multimask_stability_delta
        self.stability_thresh = dc.dynamic_multimask_stability_thresh
        self.dynamic_multimask_via_stability = dc.dynamic_multimask_via_stability

    def _run_transformer(self, src: torch.Tensor, pos: torch.Tensor, sparse: torch.Tensor):
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], 0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1).to(sparse.dtype), sparse], 1)
        hs, keys = self.transformer(src, pos, tokens)
        obj = self.pred_obj_score_head(hs[:, 0])
        iou = self.iou_prediction_head(hs[:, 1])
        mask_tokens = hs[:, 2:2 + self.num_mask_tokens]
        return keys, obj, iou, mask_tokens

    def forward_image(self, src: torch.Tensor, pos: torch.Tensor, sparse: torch.Tensor, feat_s0: torch.Tensor,
                      feat_s1: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``src``/``pos`` (B, d, h, w), ``sparse`` (B, P, d), skips (B, d, 4h, 4w) / (B, d, 2h, 2w) (unprojected).

        Returns ``masks`` (B, 4, 4h, 4w) logits, ``iou`` (B, 4), ``obj`` (B, 1) logits, ``tokens`` (B, 4, d).
        """
        b, c, h, w = src.shape
        keys, obj, iou, mtok = self._run_transformer(src, pos, sparse)
        x = keys.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        x = act1(ln1(dc1(x) + self.conv_s1(feat_s1)))
        x = act2(dc2(x) + self.conv_s0(feat_s0))
        hyper = torch.stack([m(mtok[:, i]) for i, m in enumerate(self.output_hypernetworks_mlps)], 1)
        masks = (hyper @ x.flatten(2)).view(b, -1, x.shape[-2], x.shape[-1])
        return {"masks": masks, "iou": iou, "obj": obj, "tokens": mtok}

    def forward_lidar(self, src: torch.Tensor, pos: torch.Tensor, sparse: torch.Tensor, feat_s8: torch.Tensor,
                      feat_s4: torch.Tensor, pyr: VoxelPyramid) -> Dict[str, torch.Tensor]:
        """``src``/``pos`` (B, T, d) stride-16 tokens, skips (V8, d/4) / (V4, d/8) projected voxel features.

        Returns ``masks`` (B, 4, M) per kept point, ``voxel_masks`` (B, 4, V4), ``iou``, ``obj``, ``tokens``.
        """
        b, t, c = src.shape
        keys, obj, iou, mtok = self._run_transformer(src.transpose(1, 2).unsqueeze(-1),
                                                     pos.transpose(1, 2).unsqueeze(-1), sparse)
        x = self.pts_up1(keys, pyr, 8) + feat_s8.to(keys.dtype)
        x = self.act(self.pts_norm1(x))
        x = self.act(self.pts_up2(x, pyr, 4) + feat_s4.to(x.dtype))
        hyper = torch.stack([m(mtok[:, i]) for i, m in enumerate(self.pts_hypernetworks_mlps)], 1)
        vox = hyper @ x.transpose(1, 2)
        if self.point_interp in ("trilinear", "official"):
            idx, w = pyr.trilinear(4) if self.point_interp == "trilinear" else pyr.official_interp(4)
            masks = (vox[:, :, idx] * w.to(vox.dtype)).sum(-1)
        else:
            p2v = pyr.level(4).point2vox
            masks = vox[:, :, p2v.clamp(min=0)] * (p2v >= 0).to(vox.dtype)
        return {"masks": masks, "voxel_masks": vox, "iou": iou, "obj": obj, "tokens": mtok}

    def stability(self, logits: torch.Tensor) -> torch.Tensor:
        """Stability score (B, K) of mask logits (B, K, ...)."""
        f = logits.flatten(2)
        inter = (f > self.stability_delta).sum(-1).float()
        union = (f > -self.stability_delta).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))

    def select(self, out: Dict[str, torch.Tensor], multimask: bool) -> Dict[str, torch.Tensor]:
        """Pick one mask per batch element: best multimask by predicted IoU, or the single-mask output (with
        the SAM2 stability fallback to the best multimask at inference). Adds ``mask``, ``score``, ``token``,
        ``index``.
        """
        masks, iou, tok = out["masks"], out["iou"], out["tokens"]
        b = masks.shape[0]
        ar = torch.arange(b, device=masks.device)
        best_multi = torch.argmax(iou[:, 1:], dim=-1) + 1
        if multimask:
            idx = best_multi
        elif self.dynamic_multimask_via_stability and not self.training and masks.shape[-1] > 0:
            stable = self.stability(masks[:, :1])[:, 0] >= self.stability_thresh
            idx = torch.where(stable, torch.zeros_like(best_multi), best_multi)
        else:
            idx = torch.zeros_like(best_multi)
        sel = dict(out)
        sel["mask"] = masks[ar, idx]
        sel["score"] = iou[ar, idx]
        sel["token"] = tok[ar, idx]
        sel["index"] = idx
        return sel
