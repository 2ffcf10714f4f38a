# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Datasets, synthetic drives, rosbag2 and KITTI import/export (no ROS imports)."""
