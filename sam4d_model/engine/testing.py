# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Synthetic drives for the engine's tests and benchmark (thin wrappers around :mod:`sam4d_model.data.synth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional

from ..data.synth import SynthConfig, SynthDrive, generate_drive, sample_config, write_layout
from ..data.waymo4dseg import InMemorySequence


def drive_config(scale: str = "small") -> SynthConfig:
    """``'small'``: 320x240 camera, 32x512 LiDAR (fast tests); ``'full'``: the 640x480, 64x1024 sample drive."""
    if scale == "small":
        return sample_config(width=320, height=240, beams=32, azimuths=512)
    if scale == "full":
        return sample_config()
    raise ValueError(f"unknown scale {scale!r}")


def synthetic_sequence(seed: int, num_frames: int, config: Optional[SynthConfig] = None,
                       seq_name: Optional[str] = None) -> InMemorySequence:
    """An in-memory synthetic drive with exact ground truth (``seq.labels(t)``)."""
    frames = list(generate_drive(seed, num_frames, config=config or drive_config()))
    return InMemorySequence(frames, seq_name or f"synth_{seed:06d}")


def moving_object_ids(seed: int, num_frames: int, config: Optional[SynthConfig] = None) -> List[int]:
    """Ids of the objects that move in a synthetic drive."""
    return [o.obj_id for o in SynthDrive(seed, num_frames, config or drive_config()).objects if o.speed > 0]


def write_synthetic_layout(root, seeds: Iterable[int], num_frames: int, config: Optional[SynthConfig] = None,
                           image_format: str = "png") -> List[str]:
    """Write synthetic drives (Waymo-4DSeg layout, ground-truth labels included) under ``root``; returns names."""
    names = []
    for s in seeds:
        meta = write_layout(SynthDrive(s, num_frames, config or drive_config()), Path(root), image_format=image_format)
        names.append(Path(meta).stem)
    return names
