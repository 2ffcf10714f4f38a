# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""ROS 2 glue for SAM4D: the rclpy node, conversions, TF, bag replay and offline bag processing.

At install time this directory is merged with the interface package that rosidl generates under the
same name, so ``sam4d_ros.msg`` and ``sam4d_ros.srv`` are importable next to these modules.

When the modules are imported from the source tree (tests, development), the generated interfaces live in
another ``sam4d_ros`` directory (the colcon install space). ``__path__`` is extended with every other
``sam4d_ros`` directory on ``sys.path`` that holds the generated ``msg``/``srv`` packages, so that
``sam4d_ros.node`` comes from the source tree and ``sam4d_ros.msg`` from the install space.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _extend_path() -> None:
    for entry in sys.path:
        cand = os.path.join(entry or os.getcwd(), "sam4d_ros")
        try:
            if os.path.abspath(cand) == _here or not os.path.isdir(cand):
                continue
            has_interfaces = any(os.path.isfile(os.path.join(cand, sub, "__init__.py")) for sub in ("msg", "srv"))
        except OSError:
            continue
        if has_interfaces and cand not in __path__:
            __path__.append(cand)


_extend_path()
