# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation: metrics, the paper's protocols, overlays."""
