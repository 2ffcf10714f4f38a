# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Prompt encoders: SAM-style for images, and the point-cloud counterpart on xyz.

Labels: ``1`` positive click, ``0`` negative click, ``2``/``3`` box corners (image: top-left/bottom-right,
LiDAR: min/max corners), ``-1`` padding ("not a point"). Point embeddings are position encodings
(image: 2D sine + UMPE of the pixel ray; LiDAR: Fourier + UMPE of xyz) plus a learned label embedding.
"""

from __future__ import annotations

from typing import Optional

import torch
from sam2.modeling.sam2_utils import LayerNorm2d
from torch import nn

from ..geometry import VoxelPyramid, scatter_mean_batched
from .lidar_encoder import SparseDown2x
from .position_encoding import UMPE


def _add_label_embeddings(pe: torch.Tensor, labels: torch.Tensor, point_embeddings: nn.ModuleList,
                          not_a_point: nn.Embedding) -> torch.Tensor:
    pad = (labels == -1).unsqueeze(-1)
    out = torch.where(pad, torch.zeros_like(pe), pe)
    out = out + pad.to(pe.dtype) * not_a_point.weight.to(pe.dtype)
    for k, emb in enumerate(point_embeddings):
        out = out + (labels == k).unsqueeze(-1).to(pe.dtype) * emb.weight.to(pe.dtype)
    return out


class TokenBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the channels of ``(..., V, C)`` voxel features (statistics over all leading dims)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def token_norm(kind: str, c: int) -> nn.Module:
    """Norm over the channels of voxel features: ``layer`` (LayerNorm) or ``batch`` (:class:`TokenBatchNorm`)."""
    if kind == "batch":
        return TokenBatchNorm(c)
    if kind == "layer":
        return nn.LayerNorm(c)
    raise ValueError(f"norm must be 'layer' or 'batch', got {kind!r}")


class ImagePromptEncoder(nn.Module):
    """Clicks/boxes (model-input pixels) and 4x-token-resolution masks -> sparse and dense embeddings."""

    def __init__(self, d: int, mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = d
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, d) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, d)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            nn.GELU(), nn.Conv2d(mask_in_chans, d, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, d)

    def embed_points(self, umpe: UMPE, uv: torch.Tensor, labels: torch.Tensor, size: int, img_aug: torch.Tensor,
                     intrinsics: torch.Tensor, camera2lidar: torch.Tensor) -> torch.Tensor:
        """``uv`` (B, K, 2) model-input pixels, ``labels`` (B, K) -> (B, K, d)."""
        uv = umpe.prompt_uv(uv)
        pe = umpe.image_sparse_2d(uv, size)
        pe = pe + umpe.encode_3d_rays(umpe.ray_points(uv, img_aug, intrinsics, camera2lidar))
        return _add_label_embeddings(pe, labels, self.point_embeddings, self.not_a_point_embed)

    def embed_masks(self, masks: Optional[torch.Tensor], batch: int, hw) -> torch.Tensor:
        """Masks (B, 1, 4h, 4w) or ``None`` -> dense (B, d, h, w)."""
        if masks is None:
            return self.no_mask_embed.weight.view(1, -1, 1, 1).expand(batch, -1, hw[0], hw[1])
        return self.mask_downscaling(masks)


class LidarPromptEncoder(nn.Module):
    """Clicks/boxes on xyz and per-point mask prompts (through kernel-2 sparse convolutions) for the LiDAR."""

    def __init__(self, d: int, mask_in_chans: int = 16, norm: str = "layer", act: str = "gelu"):
        super().__init__()
        self.embed_dim = d
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, d) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, d)
        c1, c2 = mask_in_chans // 4, mask_in_chans
        self.down1 = SparseDown2x(1, c1)
        self.norm1 = token_norm(norm, c1)
        self.down2 = SparseDown2x(c1, c2)
        self.norm2 = token_norm(norm, c2)
        self.proj = nn.Linear(c2, d)
        self.act = nn.ReLU() if act == "relu" else nn.GELU()
        self.no_mask_embed = nn.Embedding(1, d)

    def embed_points(self, umpe: UMPE, xyz: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``xyz`` (B, K, 3) LiDAR frame, ``labels`` (B, K) -> (B, K, d)."""
        pe = umpe.xyz_fourier(xyz) + umpe.encode_3d_xyz(xyz)
        return _add_label_embeddings(pe, labels, self.point_embeddings, self.not_a_point_embed)

    def embed_masks(self, point_masks: Optional[torch.Tensor], batch: int, pyr: VoxelPyramid,
                    voxel_masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-point masks (B, M) in {0, 1} (kept points) or ``None`` -> dense (B, T, d) on stride-16 tokens.

        ``voxel_masks`` (B, V4): the mask already on the stride-4 voxels (else the mean of its points there).
        """
        t = pyr.num_voxels(16)
        if point_masks is None and voxel_masks is None:
            return self.no_mask_embed.weight.view(1, 1, -1).expand(batch, t, -1)
        l4 = pyr.level(4)
        if voxel_masks is not None:
            x = voxel_masks.float().unsqueeze(-1)
        else:
            x = scatter_mean_batched(point_masks.float().unsqueeze(-1), l4.point2vox, l4.coords.shape[0])
        x = self.act(self.norm1(self.down1(x, pyr, 4)))
        x = self.act(self.norm2(self.down2(x, pyr, 8)))
        return self.proj(x)
