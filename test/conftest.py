# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Shared pytest fixtures: a unique ROS_DOMAIN_ID per test, paths to shared data."""

import os
import random
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
KITTI_DIR = SHARED / "realdata" / "kitti_raw_2011_09_26_drive_0009"


def _domain_for(nodeid: str) -> int:
    # 1..200, different per test and per pytest process, so concurrent runs do not talk to each other.
    rnd = random.Random(zlib.crc32(f"{os.getpid()}:{nodeid}".encode()))
    return rnd.randint(1, 200)


@pytest.fixture(autouse=True)
def ros_domain_id(request, monkeypatch):
    """Give every test its own ROS_DOMAIN_ID (also inherited by subprocess nodes)."""
    dom = _domain_for(request.node.nodeid)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(dom))
    return dom


@pytest.fixture
def kitti_dir():
    if not KITTI_DIR.is_dir():
        pytest.skip(f"real KITTI drive not found at {KITTI_DIR}")
    return KITTI_DIR
