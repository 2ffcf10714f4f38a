# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""UMPE: unified multi-modal positional encoding, plus the ego-pose encoder of the object pointers.

* image tokens: 2D sine encoding + ``MLP(flatten(ray points at D depth hypotheses, in the LiDAR frame))``;
* LiDAR tokens: random Fourier encoding of xyz + the same MLP on xyz repeated D times;
* prompts: image clicks use their pixel ray, LiDAR clicks their xyz, through the same functions.

The ray of an (augmented) pixel ``(u, v)`` at depth ``d`` is
``T_rel @ A_lidar @ camera2lidar @ inv(K) @ [(u', v') * d, d, 1]`` with ``(u', v', d, 1) = inv(A_img) @ (u, v, d, 1)``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from sam2.modeling.position_encoding import PositionEmbeddingSine
from torch import nn

from ..config import SAM4DConfig
from ..geometry import rotation_log


class UMPE(nn.Module):
    """Unified multi-modal positional encoding (shared 3D MLP for image rays and LiDAR xyz)."""

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        d = cfg.d_model
        u = cfg.umpe
        depths = torch.tensor(np.arange(u.depth_min, u.depth_max, u.depth_step), dtype=torch.float32)
        self.register_buffer("depths", depths, persistent=False)
        self.num_depths = int(depths.numel())
        self.d = d
        self.stride = cfg.image.backbone_stride
        self.sine = PositionEmbeddingSine(num_pos_feats=d, warmup_cache=False)
        self.sine_2d = u.sine_2d
        self.register_buffer("fourier_matrix", u.fourier_scale * torch.randn(3, d // 2))
        self.fourier_coord_scale = u.fourier_coord_scale
        layers = [nn.Linear(self.num_depths * 3, 4 * d), nn.ReLU(inplace=True), nn.Linear(4 * d, d)]
        if u.mlp_layernorm:
            layers.append(nn.LayerNorm(d))
        self.mlp = nn.Sequential(*layers)

    # ---- 2D / Fourier parts -------------------------------------------------------------------------------
    def _unit_frequency(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., d/2)`` channels ``sin t, cos t, sin t, ...`` of positions ``t`` in [0, 1) (times 2 pi): the
        official model's 2D sine encoding, whose frequency formula gives 1 for every channel (a quirk of the
        released code, matched on purpose under ``umpe.sine_2d: official``).
        """
        v = t.float()[..., None] * (2 * math.pi)
        return torch.stack([torch.sin(v), torch.cos(v)], -1).expand(*v.shape[:-1], self.d // 4, 2).reshape(
            *v.shape[:-1], self.d // 2)

    def image_dense_2d(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``(h*w, d)`` sine encoding of a token grid (``sam2``: SAM2's dense image encoding; ``official``: unit
        frequencies, token centres at ``(i + 0.5) / n``), channels ``[y part, x part]``.
        """
        if self.sine_2d == "official":
            ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
            xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
            py = self._unit_frequency(ys)[:, None].expand(h, w, -1)
            px = self._unit_frequency(xs)[None].expand(h, w, -1)
            return torch.cat([py, px], -1).reshape(h * w, self.d)
        return self.sine._pe(1, device, h, w)[0].flatten(1).transpose(0, 1)

    def prompt_uv(self, uv: torch.Tensor) -> torch.Tensor:
        """Model-input pixel coordinates of image clicks as the prompt encodings see them (``official``: the
        pixel's centre, ``floor(uv) + 0.5``, as the released predictor floors clicks and its encoder adds 0.5).
        """
        return torch.floor(uv) + 0.5 if self.sine_2d == "official" else uv

    def image_sparse_2d(self, uv: torch.Tensor, size: int) -> torch.Tensor:
        """Sine encoding ``(..., d)`` of pixel coordinates ``uv`` (``(..., 2)`` in the ``size``-px model input)."""
        shape = uv.shape[:-1]
        if self.sine_2d == "official":
            px = self._unit_frequency(uv[..., 0] / size)
            py = self._unit_frequency(uv[..., 1] / size)
            return torch.cat([py, px], dim=-1)
        g = size / self.stride
        x = (uv[..., 0].reshape(-1) / self.stride + 0.5) / g
        y = (uv[..., 1].reshape(-1) / self.stride + 0.5) / g
        px, py = self.sine._encode_xy(x.float(), y.float())
        return torch.cat([py, px], dim=-1).reshape(*shape, self.d)

    def xyz_fourier(self, xyz: torch.Tensor) -> torch.Tensor:
        """Random Fourier features ``(..., d)`` of LiDAR-frame xyz (metres)."""
        proj = 2 * math.pi * (xyz.float() * self.fourier_coord_scale) @ self.fourier_matrix
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    # ---- 3D part ---------------------------------------------------------------------------------------------
    def ray_points(self, uv: torch.Tensor, img_aug: torch.Tensor, intrinsics: torch.Tensor,
                   camera2lidar: torch.Tensor, t_rel: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Points ``(..., D, 3)`` in the LiDAR frame along the rays of model-input pixels ``uv`` ``(..., 2)``.

        ``img_aug`` 4x4 (original pixel -> model input pixel), ``intrinsics`` 3x3, ``camera2lidar`` 4x4 (already
        including any LiDAR augmentation), ``t_rel`` optional 4x4 applied last (ego-motion compensation).
        """
        dt = torch.float64
        aug_inv = torch.linalg.inv(img_aug.to(dt))
        uvo = uv.to(dt) @ aug_inv[:2, :2].T + aug_inv[:2, 3]
        k_inv = torch.linalg.inv(intrinsics.to(dt))
        dirs = torch.cat([uvo, torch.ones_like(uvo[..., :1])], dim=-1) @ k_inv.T  # (..., 3) camera ray at z=1
        m = camera2lidar.to(dt)
        if t_rel is not None:
            m = t_rel.to(dt) @ m
        dirs_l = dirs @ m[:3, :3].T
        pts = dirs_l[..., None, :] * self.depths.to(dt).view(-1, 1) + m[:3, 3]
        return pts.float()

    def encode_3d_rays(self, ray_pts: torch.Tensor) -> torch.Tensor:
        """UMPE 3D term ``(..., d)`` of ray points ``(..., D, 3)``."""
        return self.mlp(ray_pts.flatten(-2).to(self.mlp[0].weight.dtype))

    def encode_3d_xyz(self, xyz: torch.Tensor) -> torch.Tensor:
        """UMPE 3D term ``(..., d)`` of xyz: the MLP on xyz repeated D times (first layer folded, same result)."""
        l0 = self.mlp[0]
        w = l0.weight.view(l0.weight.shape[0], self.num_depths, 3).sum(1)
        h = torch.relu(xyz.to(w.dtype) @ w.T + l0.bias)
        for layer in self.mlp[2:]:
            h = layer(h)
        return h

    def image_token_uv(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Model-input pixel centres ``(h*w, 2)`` of stride-16 tokens."""
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return (torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + 0.5) * self.stride


class PoseEncoder(nn.Module):
    """Encodes a relative pose ``T_rel`` (4x4) as ``MLP([log(R)/pi, t/d_max])`` (added to object pointers)."""

    def __init__(self, d: int, d_max: float = 1.0):
        super().__init__()
        self.d_max = nn.Parameter(torch.tensor(float(d_max)))
        self.fc = nn.Sequential(nn.Linear(6, d), nn.ReLU(inplace=True), nn.Linear(d, d))

    def forward(self, t_rel: torch.Tensor) -> torch.Tensor:
        t_rel = t_rel.float()
        omega = rotation_log(t_rel[:, :3, :3]) / math.pi
        trans = t_rel[:, :3, 3] / (self.d_max.abs() + 1e-6)
        return self.fc(torch.cat([omega, trans], dim=1))


def temporal_sine(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1D sine encoding ``(L, dim)`` of (normalised) temporal positions ``pos`` ``(L,)``."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    p = pos.float()[:, None] / dim_t
    return torch.cat([p.sin(), p.cos()], dim=-1)
