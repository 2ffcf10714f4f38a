# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Build the node's output messages from a :class:`sam4d_ros.pipeline.FrameResult` (rclpy message types).

Every builder stamps its message with the input's stamp and frame: clouds, objects and markers with the cloud's
header, masks and overlays with the paired image's header. Pictures and colours come from
:mod:`sam4d_model.eval.overlay` (one palette for the node, the demo and the evaluation tools).
"""

from __future__ import annotations

from typing import List

import numpy as np

from sam4d_model.eval.overlay import overlay, palette
from sam4d_ros.image import numpy_to_image
from sam4d_ros.pointcloud import append_fields


def points_msg(cloud_msg, res, only_segmented: bool = False):
    """The input cloud with ``object_id`` (int32, -1 = none) and ``score`` (float32) fields."""
    keep = res.labels >= 0 if only_segmented else None
    return append_fields(cloud_msg, res.labels, res.scores, keep=keep)


def mask_msg(image_header, id_map: np.ndarray, encoding: str = "mono16"):
    """Per-pixel object id image (0 = none) at the camera resolution."""
    if encoding == "mono16":
        return numpy_to_image(np.clip(id_map, 0, 65535).astype(np.uint16), "mono16", image_header)
    return numpy_to_image(id_map.astype(np.int32), "32SC1", image_header)


def overlay_msg(image_header, res, cam: int = 0):
    """The ``~/overlay`` image (rgb8) of camera ``cam``: masks blended, LiDAR points projected (objects in colour)."""
    arr = overlay(res.images[cam], res.id_maps[cam], res.cloud.xyz, res.labels, res.cameras[cam].K,
                  res.camera2lidar[cam])
    return numpy_to_image(arr, "rgb8", image_header)


def objects_msg(cloud_header, image_stamp, res):
    """The per-frame ``sam4d_ros/ObjectMasks`` summary."""
    from geometry_msgs.msg import Point, Vector3

    from sam4d_ros.msg import ObjectMask, ObjectMasks

    msg = ObjectMasks()
    msg.header = cloud_header
    msg.image_stamp = image_stamp
    msg.inference_time = float(res.inference_time)
    for o in res.objects:
        msg.objects.append(ObjectMask(
            object_id=int(o.obj_id), score=float(o.score), iou_score=float(o.iou_score),
            num_points=int(o.num_points), num_pixels=int(o.num_pixels),
            centroid=Point(x=float(o.centroid[0]), y=float(o.centroid[1]), z=float(o.centroid[2])),
            extent=Vector3(x=float(o.extent[0]), y=float(o.extent[1]), z=float(o.extent[2])),
            prompted=bool(o.prompted), confidence=float(o.confidence), lost=bool(o.lost)))
    return msg


def event_msgs(cloud_header, res) -> list:
    """One ``sam4d_ros/ObjectEvent`` per track-health event of the frame (``sam4d_ros.health``)."""
    from sam4d_ros.health import KINDS
    from sam4d_ros.msg import ObjectEvent

    return [ObjectEvent(header=cloud_header, object_id=int(e.obj_id), event=KINDS.index(e.kind),
                        score=float(e.score), reason=str(e.reason)) for e in res.events]


def markers_msg(cloud_header, res, ns: str = "sam4d") -> "List":
    """``visualization_msgs/MarkerArray``: a DELETEALL, then a box and a text label per object with points."""
    from visualization_msgs.msg import Marker, MarkerArray

    arr = MarkerArray()
    clear = Marker()
    clear.header = cloud_header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    for o in res.objects:
        if o.num_points == 0:
            continue
        col = palette(o.obj_id) / 255.0
        centre = (o.bbox_min + o.bbox_max) / 2.0
        box = Marker()
        box.header = cloud_header
        box.ns, box.id, box.type, box.action = ns, int(o.obj_id) * 2, Marker.CUBE, Marker.ADD
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (float(c) for c in centre)
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (float(max(e, 0.05)) for e in o.extent)
        box.color.r, box.color.g, box.color.b, box.color.a = float(col[0]), float(col[1]), float(col[2]), 0.35
        label = Marker()
        label.header = cloud_header
        label.ns, label.id, label.type, label.action = ns, int(o.obj_id) * 2 + 1, Marker.TEXT_VIEW_FACING, Marker.ADD
        label.pose.position.x, label.pose.position.y = float(centre[0]), float(centre[1])
        label.pose.position.z = float(o.bbox_max[2] + 0.5)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.8
        label.color.r = label.color.g = label.color.b = label.color.a = 1.0
        label.text = f"{o.obj_id}: {o.score:.2f} ({o.num_points} pts)"
        arr.markers += [box, label]
    return arr
