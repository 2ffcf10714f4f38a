# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""launch_pytest test of launch/sam4d.launch.py (collected only on a real ROS 2 install with launch_pytest).

Starts the launch file (random-init model, CPU), waits for the node's topics and services, publishes one synthetic
camera + LiDAR frame with TF, sends a prompt through ~/add_prompts and receives a labelled cloud on ~/points.
Needs the package built and installed (``colcon build``; FindPackageShare('sam4d_ros')).
"""

from pathlib import Path

import numpy as np
import pytest

launch_pytest = pytest.importorskip("launch_pytest")
pytest.importorskip("launch_ros")
pytest.importorskip("sam4d_ros.msg")

from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from launch import LaunchDescription  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ros, pytest.mark.slow]


@launch_pytest.fixture
def launch_description():
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "sam4d.launch.py")),
        launch_arguments={"checkpoint": "random", "device": "cpu",
                          "config": str(REPO / "config" / "sam4d.yaml")}.items())
    return LaunchDescription([include, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=launch_description)
def test_launch_file_serves_prompts_and_labels_clouds():
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from sam4d_model.data.synth import generate_drive, sample_config
    from sam4d_ros.msg import Prompt
    from sam4d_ros.pointcloud import labels_from_cloud
    from sam4d_ros.srv import AddPrompts, ListObjects
    from sam4d_ros.testing import NS, RosHarness, frame_messages

    frames = list(generate_drive(5, 2, config=sample_config(width=160, height=120, beams=16, azimuths=256)))
    with RosHarness("launch_test") as h:
        out = h.collect(PointCloud2, "/sam4d/points")
        pubs = {"cloud": h.publisher(PointCloud2, "/lidar/points"), "image": h.publisher(Image, "/camera/image_raw"),
                "info": h.publisher(CameraInfo, "/camera/camera_info"), "tf": h.publisher(TFMessage, "/tf"),
                "tf_static": h.publisher(TFMessage, "/tf_static", latched=True)}
        for p in pubs.values():
            assert h.wait_matched(p, timeout=120), f"node did not subscribe to {p.topic_name}"
        names = [n for n, _ in h.node.get_service_names_and_types()]
        for s in ("add_prompts", "remove_object", "reset", "list_objects"):
            assert h.wait_for(lambda s=s: f"/sam4d/{s}" in [n for n, _ in h.node.get_service_names_and_types()], 30), \
                (s, names)
        f0, lab0 = frames[0]
        ids, counts = np.unique(lab0.point_instance[lab0.point_instance > 0], return_counts=True)
        xyz = f0.points[lab0.point_instance == ids[np.argmax(counts)]][0, :3]
        pr = Prompt(object_id=0, modality=Prompt.MODALITY_LIDAR)
        pr.positive_points = [Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))]
        resp = h.call(AddPrompts, "/sam4d/add_prompts", AddPrompts.Request(prompts=[pr]), timeout=30)
        assert resp.success, resp.reasons
        t0 = 1_700_000_000 * NS
        for k, (f, _) in enumerate(frames):
            m = frame_messages(f, t0 + k * 100_000_000)
            for key in ("tf_static", "tf", "info", "image", "cloud"):
                pubs[key].publish(m[key])
            assert h.wait_for(lambda k=k: len(out) > k, 120)
        ids, _ = labels_from_cloud(out[-1][1])
        assert len(ids) == frames[-1][0].points.shape[0] and (ids == resp.object_ids[0]).any()
        lst = h.call(ListObjects, "/sam4d/list_objects", ListObjects.Request())
        assert list(lst.object_ids) == [resp.object_ids[0]]
