# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Launch the SAM4D node: ``ros2 launch sam4d_ros sam4d.launch.py [arg:=value ...]``.

Arguments: ``config`` (parameter YAML, default: the installed config/sam4d.yaml), ``checkpoint`` ('' = embedded
model, a path, or ``random``), ``device`` (auto/cpu/cuda), ``use_sim_time`` (true with ``ros2 bag play --clock``),
``image_topic``/``camera_info_topic``/``points_topic`` (remappings of the default input topics), ``odom_frame``,
``log_level``, ``points_reliability``/``image_reliability``/``camera_info_reliability`` (input QoS: ``auto``
follows the publishers, or ``reliable`` / ``best_effort``; they override the YAML), ``rviz`` (``true`` also starts
``rviz2`` with the installed rviz/sam4d.rviz; default ``false``). The same node runs without launch as
``ros2 run sam4d_ros sam4d_node --ros-args ...`` (see README).
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGS = {
    "checkpoint": ("", "model checkpoint: '' = embedded sam4d_tiny, a .safetensors path, or 'random' (tests/dev)"),
    "device": ("auto", "inference device: auto, cpu, cuda"),
    "use_sim_time": ("false", "use /clock (ros2 bag play --clock)"),
    "image_topic": ("/camera/image_raw", "camera image topic (sensor_msgs/Image)"),
    "camera_info_topic": ("/camera/camera_info", "camera info topic"),
    "points_topic": ("/lidar/points", "LiDAR point cloud topic (sensor_msgs/PointCloud2)"),
    "odom_frame": ("odom", "fixed frame for ego-motion (odom or map)"),
    "log_level": ("info", "node log level"),
    "points_reliability": ("auto", "QoS reliability of the cloud subscription: auto (follows the publishers), "
                           "reliable, best_effort"),
    "image_reliability": ("auto", "QoS reliability of the image subscriptions: auto, reliable, best_effort"),
    "camera_info_reliability": ("auto", "QoS reliability of the CameraInfo subscriptions: auto, reliable, "
                                "best_effort"),
    "rviz": ("false", "also start rviz2 with the installed rviz/sam4d.rviz (true/false)"),
}


def generate_launch_description():
    cfg = LaunchConfiguration
    args = [DeclareLaunchArgument(
        "config", default_value=PathJoinSubstitution([FindPackageShare("sam4d_ros"), "config", "sam4d.yaml"]),
        description="parameter YAML of the node")]
    args += [DeclareLaunchArgument(name, default_value=default, description=desc) for name, (default, desc)
             in ARGS.items()]
    node = Node(
        package="sam4d_ros",
        executable="sam4d_node",
        name="sam4d",
        output="screen",
        emulate_tty=True,
        parameters=[
            cfg("config"),
            {
                "checkpoint": ParameterValue(cfg("checkpoint"), value_type=str),
                "device": ParameterValue(cfg("device"), value_type=str),
                "odom_frame": ParameterValue(cfg("odom_frame"), value_type=str),
                "points_reliability": ParameterValue(cfg("points_reliability"), value_type=str),
                "image_reliability": ParameterValue(cfg("image_reliability"), value_type=str),
                "camera_info_reliability": ParameterValue(cfg("camera_info_reliability"), value_type=str),
                "use_sim_time": ParameterValue(cfg("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[
            ("/camera/image_raw", cfg("image_topic")),
            ("/camera/image_raw/compressed", [cfg("image_topic"), "/compressed"]),
            ("/camera/camera_info", cfg("camera_info_topic")),
            ("/lidar/points", cfg("points_topic")),
        ],
        arguments=["--ros-args", "--log-level", cfg("log_level")],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        output="screen",
        arguments=["-d", PathJoinSubstitution([FindPackageShare("sam4d_ros"), "rviz", "sam4d.rviz"])],
        parameters=[{"use_sim_time": ParameterValue(cfg("use_sim_time"), value_type=bool)}],
        condition=IfCondition(cfg("rviz")),
    )
    return LaunchDescription(args + [node, rviz])
