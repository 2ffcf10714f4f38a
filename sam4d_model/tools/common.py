# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the command-line tools, the ROS node and the demo: model loading, device choice."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch

EMBEDDED_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam4d_tiny.safetensors"


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU raises a clear error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU (use device:=cpu or auto)")
    return torch.device(name)


def load_model(checkpoint: Optional[str] = None, device: str = "auto", config: str = "sam4d_tiny",
               seed: int = 0) -> Tuple[torch.nn.Module, object]:
    """Load SAM4D for inference.

    ``checkpoint``: a ``.safetensors``/``.pt`` path, ``None``/``""``/``"default"`` for the embedded model, or
    ``"random"`` for a randomly initialised ``config`` (development and tests only: loudly warned).
    """
    from ..checkpoint import load_checkpoint
    from ..config import load_config
    from ..modeling import build_sam4d

    dev = pick_device(device)
    if checkpoint in (None, "", "default", "embedded"):
        checkpoint = str(EMBEDDED_CHECKPOINT)
        if not EMBEDDED_CHECKPOINT.is_file():
            raise FileNotFoundError(f"the embedded checkpoint {EMBEDDED_CHECKPOINT} is missing; pass a checkpoint "
                                    "path (or 'random' for an untrained model, development only)")
    if checkpoint == "random":
        warnings.warn(f"using a RANDOMLY INITIALISED {config} model: its masks are meaningless", stacklevel=2)
        torch.manual_seed(seed)
        cfg = load_config(config)
        return build_sam4d(cfg).to(dev).eval(), cfg
    return load_checkpoint(checkpoint, dev)
