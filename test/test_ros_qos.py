# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Input QoS (#16 item 2): ``auto`` follows the publishers, a fixed mismatch is warned about and counted."""

import pytest

rclpy = pytest.importorskip("rclpy")

from sensor_msgs.msg import PointCloud2  # noqa: E402

from sam4d_ros.testing import RosHarness, micro_model_config  # noqa: E402


def _reliability(node, topic="/lidar/points"):
    return node.status()["input_reliability"][topic]


def test_auto_follows_the_publishers_and_fixed_mismatch_is_counted(tmp_path):
    cfg = str(micro_model_config(tmp_path / "micro.yaml"))
    with RosHarness("qos_test") as h:
        auto = h.start_sam4d({"checkpoint": "random", "model_config": cfg}, name="sam4d_auto")
        fixed = h.start_sam4d({"checkpoint": "random", "model_config": cfg, "points_reliability": "reliable"},
                              name="sam4d_fixed")
        assert _reliability(auto) == "best_effort"  # no publisher yet: matches anything
        pub = h.publisher(PointCloud2, "/lidar/points", reliable=True)
        assert h.wait_for(lambda: _reliability(auto) == "reliable", 10.0), auto.status()["input_reliability"]
        # make-before-break: the old subscription goes once the new one matched
        assert h.wait_for(lambda: pub.get_subscription_count() == 2, 10.0), pub.get_subscription_count()
        assert fixed.status()["counters"].get("qos_mismatch", 0) == 0
        # a best-effort publisher joins: auto drops to best_effort, the fixed reliable one would get nothing
        h.publisher(PointCloud2, "/lidar/points", reliable=False)
        assert h.wait_for(lambda: _reliability(auto) == "best_effort", 10.0), auto.status()["input_reliability"]
        assert h.wait_for(lambda: fixed.status()["counters"].get("qos_mismatch", 0) >= 1, 10.0), \
            fixed.status()["counters"]
        assert _reliability(fixed) == "reliable"
        assert auto.status()["counters"].get("qos_mismatch", 0) == 0


def test_launch_file_exposes_the_qos_choices():
    """``points_reliability:=reliable`` used to be silently ignored: the launch file had no such argument."""
    import ast
    from pathlib import Path

    from sam4d_ros.node import PARAMETERS

    src = (Path(__file__).resolve().parents[1] / "launch" / "sam4d.launch.py").read_text()
    tree = ast.parse(src)
    args = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGS")
    for name in ("points_reliability", "image_reliability", "camera_info_reliability"):
        assert name in args, name
        assert args[name][0] == PARAMETERS[name][0]  # same default as the node
        assert f'"{name}": ParameterValue(cfg("{name}")' in src  # passed on to the node
