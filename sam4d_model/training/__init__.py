# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Training: prompt simulation, clip sampling, the training loop (single process or DDP)."""
