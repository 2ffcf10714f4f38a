# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D data engine: 2D video masklets -> camera-LiDAR aligned 4D pseudo-labels (see :mod:`.pipeline`)."""

from .config import EngineConfig
from .corruption import CorruptionConfig
from .masklets import FrameMasks, MaskletSource
from .pipeline import EngineResult, label_sequence
from .sources import FileMaskSource, GroundTruthSource, Sam2VideoSource, Sam4dSource, write_mask_files

__all__ = ["EngineConfig", "CorruptionConfig", "FrameMasks", "MaskletSource", "EngineResult", "label_sequence",
           "FileMaskSource", "GroundTruthSource", "Sam2VideoSource", "Sam4dSource", "write_mask_files"]
