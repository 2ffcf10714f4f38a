# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
# Source me (bash): the project's venv, the ROS 2 environment and this package's install space.
# Puts the package's executables (sam4d_node, sam4d_bag_replay, sam4d_process_bag) on PATH, like `ros2 run`.
_SAM4D_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_SAM4D_ROOT/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS 2 from PyPI wheels: the venv is itself an ament prefix.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
fi
# shellcheck disable=SC1091
source "$_SAM4D_ROOT/scripts/ros_checks.sh"
if [ -f "$_SAM4D_ROOT/.dev_ws/install/local_setup.bash" ]; then
  if _sam4d_real_tf2_msgs "$_SAM4D_ROOT/.dev_ws"; then
    # a real ROS 2 provides tf2_msgs: the dev-only stand-in would hide it (No module named 'tf2_msgs.srv')
    echo "[sam4d env] not sourcing .dev_ws: the real tf2_msgs in $_SAM4D_REAL_TF2 is used (re-run make setup to remove .dev_ws)" >&2
  else
    source "$_SAM4D_ROOT/.dev_ws/install/local_setup.bash"
  fi
fi
[ -f "$_SAM4D_ROOT/install/local_setup.bash" ] && source "$_SAM4D_ROOT/install/local_setup.bash"
if [ -d "$_SAM4D_ROOT/install/lib/sam4d_ros" ]; then
  case ":${PATH}:" in *":$_SAM4D_ROOT/install/lib/sam4d_ros:"*) ;; *) export PATH="$_SAM4D_ROOT/install/lib/sam4d_ros:$PATH";; esac
fi
unset _SAM4D_ROOT
