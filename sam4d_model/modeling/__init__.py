# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D network modules (PyTorch only)."""

from __future__ import annotations

from typing import Union

from torch import nn

from ..config import SAM4DConfig, load_config
from .sam4d import SAM4D, CameraCalib, FrameFeatures, MemoryEntry, ObjectPrompt, StepOutput


def build_sam4d(cfg: Union[SAM4DConfig, str, dict]) -> SAM4D:
    """Build a randomly initialised SAM4D (in eval mode) from a config object, name, YAML path or dict."""
    if not isinstance(cfg, SAM4DConfig):
        cfg = load_config(cfg)
    return SAM4D(cfg).eval()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["SAM4D", "build_sam4d", "count_parameters", "CameraCalib", "FrameFeatures", "MemoryEntry",
           "ObjectPrompt", "StepOutput"]
