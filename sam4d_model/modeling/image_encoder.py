# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Image encoder: SAM2's Hiera trunk and FPN neck (from the ``sam2`` package), stride-16 tokens."""

from __future__ import annotations

from typing import Dict

import torch
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine
from torch import nn

from ..config import SAM4DConfig


class SAM4DImageEncoder(nn.Module):
    """Hiera + FPN neck in the SAM2 layout (parameter names ``trunk.*`` and ``neck.*`` as in SAM2 checkpoints).

    ``forward`` takes normalised images ``(B, 3, S, S)`` and returns ``backbone_fpn`` (strides 4, 8, 16, each
    ``d_model`` channels) and ``tokens`` (stride 16).
    """

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        ic = cfg.image
        trunk = Hiera(
            embed_dim=ic.embed_dim,
            num_heads=ic.num_heads,
            stages=tuple(ic.stages),
            global_att_blocks=tuple(ic.global_att_blocks),
            window_spec=tuple(ic.window_spec),
            window_pos_embed_bkg_spatial_size=tuple(ic.window_pos_embed_bkg_spatial_size),
        )
        neck = FpnNeck(
            position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.d_model, warmup_cache=False),
            d_model=cfg.d_model,
            backbone_channel_list=list(trunk.channel_list),
            fpn_top_down_levels=list(ic.fpn_top_down_levels),
            fpn_interp_model="nearest",
        )
        self.encoder = ImageEncoder(trunk=trunk, neck=neck, scalp=1)
        self.register_buffer("pixel_mean", torch.tensor(ic.pixel_mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(ic.pixel_std).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.image_size = ic.image_size

    @property
    def trunk(self) -> nn.Module:
        """The Hiera trunk."""
        return self.encoder.trunk

    @property
    def neck(self) -> nn.Module:
        """The FPN neck."""
        return self.encoder.neck

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` 0..255 -> ImageNet-normalised float."""
        return (images_uint8.float() - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor) -> Dict[str, object]:
        out = self.encoder(images)
        return {"backbone_fpn": out["backbone_fpn"], "tokens": out["vision_features"]}
