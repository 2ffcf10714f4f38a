# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""rviz/sam4d.rviz and foxglove/sam4d_layout.json against the node they visualise (issue #16 item 7).

The node's topics are not listed by hand: a real ``Sam4dNode`` (random-init model) is started over rclpy and its
published and subscribed topics, with their types, are read from the ROS graph. Every topic the two configs name
must be one of them, with the type the display or panel expects; the cloud display colours by the field the node's
own cloud builder appends; the click tools publish to the node's click subscription; the launch file can start
rviz2 with the installed config.
"""

import ast
import json
import os
import random
import re
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RVIZ = REPO / "rviz" / "sam4d.rviz"
FOXGLOVE = REPO / "foxglove" / "sam4d_layout.json"
LAUNCH = REPO / "launch" / "sam4d.launch.py"

# RViz display / tool class -> (message type, whether the node publishes it (True) or subscribes to it (False))
RVIZ_TYPES = {
    "rviz_default_plugins/PointCloud2": ("sensor_msgs/msg/PointCloud2", True),
    "rviz_default_plugins/Image": ("sensor_msgs/msg/Image", True),
    "rviz_default_plugins/MarkerArray": ("visualization_msgs/msg/MarkerArray", True),
    "rviz_default_plugins/PublishPoint": ("geometry_msgs/msg/PointStamped", False),
}


@pytest.fixture(scope="module")
def graph():
    """{"pub": {topic: [types]}, "sub": {topic: [types]}} of a real sam4d node named ``sam4d`` in ``/``."""
    pytest.importorskip("rclpy")
    pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
    from sam4d_ros.testing import RosHarness

    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid() + 7).randint(231, 232))
    try:
        with RosHarness("viz_config_test") as h:
            h.start_sam4d({"checkpoint": "random", "device": "cpu"})
            seen = {}

            def read():
                seen["pub"] = dict(h.node.get_publisher_names_and_types_by_node("sam4d", "/"))
                seen["sub"] = dict(h.node.get_subscriber_names_and_types_by_node("sam4d", "/"))
                return "/sam4d/points" in seen["pub"] and "/clicked_point" in seen["sub"]

            assert h.wait_for(read, 30), f"node's topics not seen in the graph: {seen}"
            return seen
    finally:
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old


def _rviz():
    return yaml.safe_load(RVIZ.read_text())


def _rviz_items():
    """(class, topic) of every display and tool with a topic, displays inside groups included."""
    vm = _rviz()["Visualization Manager"]
    out = []

    def walk(items):
        for it in items or []:
            if "Displays" in it:
                walk(it["Displays"])
            topic = it.get("Topic")
            if isinstance(topic, dict):
                topic = topic.get("Value")
            if topic:
                out.append((it["Class"], topic))

    walk(vm["Displays"])
    walk(vm["Tools"])
    return out


def _foxglove():
    return json.loads(FOXGLOVE.read_text())


def _foxglove_topics():
    """(panel id, key, topic) of every topic a panel of the layout names."""
    out = []
    for pid, cfg in _foxglove()["configById"].items():
        def walk(o, pid=pid):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k == "topics" and isinstance(v, dict):
                        out.extend((pid, k, t) for t in v)
                    elif isinstance(v, str) and v and (k.endswith("Topic") or k in ("topicPath", "topicToRender")):
                        # message paths: /topic.field or /topic{filter}
                        out.append((pid, k, re.split(r"[.{\[]", v, maxsplit=1)[0]))
                    else:
                        walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(cfg)
    return out


def _panel(prefix):
    return next(cfg for pid, cfg in _foxglove()["configById"].items() if pid.split("!")[0] == prefix)


def _check(graph, topic, msg_type, published, where):
    side = graph["pub"] if published else graph["sub"]
    what = "publishes" if published else "subscribes to"
    assert topic in side, f"{where}: the node {what} no {topic!r} (it {what} {sorted(side)})"
    assert msg_type is None or msg_type in side[topic], f"{where}: {topic} is {side[topic]}, not {msg_type}"


def test_rviz_topics_are_the_nodes(graph):
    items = _rviz_items()
    classes = {c for c, _ in items}
    for needed in RVIZ_TYPES:
        assert needed in classes, f"rviz config has no {needed} with a topic"
    for cls, topic in items:
        msg_type, published = RVIZ_TYPES.get(cls, (None, True))
        both = set(graph["pub"]) | set(graph["sub"])
        if cls not in RVIZ_TYPES:
            assert topic in both, f"rviz {cls}: {topic!r} is not a topic of the node"
            continue
        _check(graph, topic, msg_type, published, f"rviz {cls}")


def test_rviz_image_is_the_overlay_and_fixed_frame_is_odom():
    from sam4d_ros.node import PARAMETERS

    images = [t for c, t in _rviz_items() if c == "rviz_default_plugins/Image"]
    assert images and all(t.endswith("/overlay") for t in images), images
    assert _rviz()["Visualization Manager"]["Global Options"]["Fixed Frame"] == PARAMETERS["odom_frame"][0]
    assert "rviz_default_plugins/TF" in {d["Class"] for d in _rviz()["Visualization Manager"]["Displays"]}


def _node_cloud_fields():
    """Field names of a cloud built by the node's own output builder (sam4d_ros.outputs.points_msg)."""
    pytest.importorskip("sensor_msgs.msg")
    from std_msgs.msg import Header

    from sam4d_ros.outputs import points_msg
    from sam4d_ros.pointcloud import make_cloud

    xyz = np.zeros(4, np.float32)
    cloud = make_cloud(Header(frame_id="lidar"), {"x": xyz, "y": xyz, "z": xyz})
    res = types.SimpleNamespace(labels=np.array([-1, 1, 1, 2], np.int32), scores=np.ones(4, np.float32))
    return [f.name for f in points_msg(cloud, res).fields]


def test_rviz_cloud_is_coloured_by_object_id():
    fields = _node_cloud_fields()
    clouds = [d for d in _rviz()["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert clouds
    for d in clouds:
        assert d["Color Transformer"] == "Intensity", d["Color Transformer"]
        assert d["Channel Name"] == "object_id", d["Channel Name"]
        assert d["Channel Name"] in fields, f"the node's cloud has no field {d['Channel Name']!r}: {fields}"


def test_rviz_publish_point_goes_to_the_click_subscription(graph):
    from sam4d_ros.node import PARAMETERS

    tools = [t for c, t in _rviz_items() if c == "rviz_default_plugins/PublishPoint"]
    assert tools == [PARAMETERS["click_topic"][0]], tools
    _check(graph, tools[0], "geometry_msgs/msg/PointStamped", False, "rviz PublishPoint")


def test_foxglove_topics_are_the_nodes(graph):
    topics = _foxglove_topics()
    assert topics, "layout names no topic"
    both = set(graph["pub"]) | set(graph["sub"])
    for pid, key, topic in topics:
        assert topic in both, f"foxglove {pid} {key}: {topic!r} is not a topic of the node ({sorted(both)})"
    three_d = _panel("3D")
    for topic in three_d["topics"]:
        _check(graph, topic, None, True, "foxglove 3D")
    assert {"/sam4d/points", "/sam4d/markers"} <= set(three_d["topics"]), three_d["topics"]
    assert three_d["topics"]["/sam4d/points"]["colorField"] in _node_cloud_fields()
    assert three_d["topics"]["/sam4d/points"]["colorField"] == "object_id"
    _check(graph, three_d["publish"]["pointTopic"], "geometry_msgs/msg/PointStamped", False, "foxglove 3D publish")
    image = _panel("Image")["imageMode"]["imageTopic"]
    assert image.endswith("/overlay"), image
    _check(graph, image, "sensor_msgs/msg/Image", True, "foxglove Image")
    diag = _panel("DiagnosticSummary")["topicToRender"]
    _check(graph, diag, "diagnostic_msgs/msg/DiagnosticArray", True, "foxglove DiagnosticSummary")
    raw = _panel("RawMessages")["topicPath"]
    _check(graph, re.split(r"[.{\[]", raw, maxsplit=1)[0], None, True, "foxglove RawMessages")


def test_foxglove_layout_places_every_panel():
    from sam4d_ros.node import PARAMETERS

    layout = _foxglove()
    placed = set(re.findall(r'"([A-Za-z0-9]+![^"]+)"', json.dumps(layout["layout"])))
    assert placed == set(layout["configById"]), (placed, set(layout["configById"]))
    assert _panel("3D")["followTf"] == PARAMETERS["odom_frame"][0]


def test_launch_declares_rviz_and_starts_rviz2_with_the_installed_config():
    src = LAUNCH.read_text()
    tree = ast.parse(src)
    args = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGS")
    assert "rviz" in args, "launch file declares no 'rviz' argument"
    assert args["rviz"][0] == "false", args["rviz"]
    assert 'condition=IfCondition(cfg("rviz"))' in src, "rviz2 is not started under IfCondition(rviz)"
    assert 'executable="rviz2"' in src and 'package="rviz2"' in src
    assert 'FindPackageShare("sam4d_ros"), "rviz", "sam4d.rviz"' in src, "rviz2 is not given the installed config"
    cmake = (REPO / "CMakeLists.txt").read_text()
    installed = [line.split() for line in re.findall(r"install\(DIRECTORY ([^)]*)DESTINATION share", cmake)]
    dirs = {d for line in installed for d in line}
    assert {"rviz", "foxglove"} <= dirs, f"rviz/ and foxglove/ are not installed to share: {dirs}"
