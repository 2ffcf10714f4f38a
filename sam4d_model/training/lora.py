# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""LoRA adapters for cheap adaptation of the image encoder to new sensors.

``add_lora(module, rank, alpha, targets)`` replaces every ``nn.Linear`` whose qualified name ends with one of
``targets`` (default: attention ``qkv`` and ``proj`` of the Hiera blocks) by :class:`LoRALinear`: the original
weights frozen, plus a trainable low-rank update ``B @ A`` scaled by ``alpha / rank`` (``B`` starts at zero, so the
network is unchanged at the start). ``merge_lora`` folds the updates back into plain ``nn.Linear`` layers so that
a fine-tuned checkpoint loads into the unmodified architecture.
"""

from __future__ import annotations

import math
from typing import Iterable, List

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``y = base(x) + (alpha / r) * x A^T B^T`` with ``base`` frozen."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0):
        super().__init__()
        if rank < 1:
            raise ValueError("LoRA rank must be >= 1")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded in."""
        lin = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                lin.bias.copy_(self.base.bias)
        return lin.to(self.base.weight.device, self.base.weight.dtype)


def add_lora(module: nn.Module, rank: int = 4, alpha: float = 8.0,
             targets: Iterable[str] = ("attn.qkv", "attn.proj")) -> List[str]:
    """Freeze ``module`` and wrap its matching linear layers with LoRA; returns the wrapped names."""
    targets = tuple(targets)
    for p in module.parameters():
        p.requires_grad_(False)
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n.endswith(targets)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha))
    return names


def merge_lora(module: nn.Module) -> int:
    """Replace every :class:`LoRALinear` in ``module`` by its merged ``nn.Linear``; returns how many."""
    todo = [(n, m) for n, m in module.named_modules() if isinstance(m, LoRALinear)]
    for name, m in todo:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, m.merged())
    return len(todo)
