# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D: promptable segmentation and tracking in camera and LiDAR streams (PyTorch, no ROS)."""

__version__ = "0.1.0"
