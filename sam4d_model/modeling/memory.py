# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""MCMA memory: memory-attention stack (SAM2 layers, no RoPE) and the image / LiDAR memory encoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler
from sam2.modeling.sam.transformer import Attention
from torch import nn

from ..config import SAM4DConfig
from ..geometry import LEVEL_STRIDES, VoxelPyramid, scatter_mean_batched
from .lidar_encoder import SparseDown2x
from .sparse_torch import pyramid_pairs, subm_conv


def build_memory_attention(cfg: SAM4DConfig) -> MemoryAttention:
    """SAM2 memory attention with plain (position-encoded, non-rotary) attention, since LiDAR has no grid."""
    mc = cfg.memory
    d = cfg.d_model
    layer = MemoryAttentionLayer(
        activation="relu",
        cross_attention=Attention(d, mc.num_heads, downsample_rate=1, dropout=mc.dropout, kv_in_dim=mc.mem_dim),
        d_model=d,
        dim_feedforward=mc.dim_feedforward,
        dropout=mc.dropout,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=Attention(d, mc.num_heads, downsample_rate=1, dropout=mc.dropout),
    )
    return MemoryAttention(d_model=d, pos_enc_at_input=True, layer=layer, num_layers=mc.num_layers,
                           batch_first=True)


class ImageMemoryEncoder(nn.Module):
    """SAM2 memory encoder: mask downsampler (stride 16) + 1x1 projection of pixel features + CX fuser."""

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        d = cfg.d_model
        self.mask_downsampler = MaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1, total_stride=16)
        self.pix_feat_proj = nn.Conv2d(d, d, kernel_size=1)
        self.fuser = Fuser(CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                           num_layers=cfg.memory.fuser_layers)
        self.out_proj = nn.Conv2d(d, cfg.memory.mem_dim, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> torch.Tensor:
        """``pix_feat`` (B, d, h, w), ``mask_for_mem`` (B, 1, S, S) scaled logits -> (B, mem_dim, h, w)."""
        m = self.mask_downsampler(mask_for_mem)
        if m.shape[-2:] != pix_feat.shape[-2:]:
            m = F.interpolate(m, size=pix_feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.out_proj(self.fuser(self.pix_feat_proj(pix_feat) + m))


class SubmConvTokens(nn.Module):
    """Submanifold ``k x k x k`` convolution (no bias) on the tokens of one pyramid level, batched over dim 0.

    Weight layout as spconv's ``SubMConv3d``: ``(out, k, k, k, in)``; computed with the pure-PyTorch per-offset
    gather + matmul of :mod:`~sam4d_model.modeling.sparse_torch` on every device.
    """

    def __init__(self, d: int, k: int):
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(d, k, k, k, d))
        nn.init.kaiming_uniform_(self.weight.view(d, -1), a=5 ** 0.5)

    def forward(self, x: torch.Tensor, pyr: VoxelPyramid, stride: int) -> torch.Tensor:
        return subm_conv(x, self.weight.to(x.dtype), pyramid_pairs(pyr, stride, self.k))


class TokenCXBlock(nn.Module):
    """Residual token block, the point-set analogue of ``CXBlock``: [``k^3`` submanifold convolution ->]
    LayerNorm -> MLP x4 -> layer scale. With ``conv_kernel = 7`` (and zero MLP biases) this is the official
    LiDAR memory fuser block; with 0 the block has no spatial mixing.
    """

    def __init__(self, d: int, layer_scale: float = 1e-6, conv_kernel: int = 0, eps: float = 1e-5):
        super().__init__()
        self.conv = SubmConvTokens(d, conv_kernel) if conv_kernel else None
        self.norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(layer_scale * torch.ones(d))

    def forward(self, x: torch.Tensor, pyr: VoxelPyramid = None, stride: int = 16) -> torch.Tensor:
        h = x if self.conv is None else self.conv(x, pyr, stride)
        return x + self.gamma * self.fc2(F.gelu(self.fc1(self.norm(h))))


class LidarMemoryEncoder(nn.Module):
    """Per-point mask -> base voxels -> four kernel-2 sparse convolutions (stride 16) -> fused with tokens."""

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        d = cfg.d_model
        mc = cfg.memory
        chans = list(mc.mask_downsampler_channels)
        self.downs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = 1
        for c in chans:
            self.downs.append(SparseDown2x(cin, c))
            self.norms.append(nn.LayerNorm(c, eps=mc.lidar_norm_eps))
            cin = c
        self.mask_proj = nn.Linear(cin, d)
        self.pix_feat_proj = nn.Linear(d, d)
        self.fuser = nn.ModuleList([TokenCXBlock(d, conv_kernel=mc.lidar_fuser_kernel, eps=mc.lidar_norm_eps)
                                    for _ in range(mc.fuser_layers)])
        self.out_proj = nn.Linear(d, mc.mem_dim)

    def forward(self, tokens: torch.Tensor, point_mask_for_mem: torch.Tensor, pyr: VoxelPyramid) -> torch.Tensor:
        """``tokens`` (B, T, d), ``point_mask_for_mem`` (B, M) scaled logits -> (B, T, mem_dim)."""
        l1 = pyr.level(1)
        x = scatter_mean_batched(point_mask_for_mem.unsqueeze(-1), l1.point2vox, l1.coords.shape[0])
        for i, (down, norm) in enumerate(zip(self.downs, self.norms)):
            x = F.gelu(norm(down(x, pyr, LEVEL_STRIDES[i])))
        x = self.pix_feat_proj(tokens) + self.mask_proj(x)
        for block in self.fuser:
            x = block(x, pyr, 16)
        return self.out_proj(x)
