# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
# Source me (bash): the project's venv, the ROS 2 environment and this package's install space.
_SAM4D_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_SAM4D_ROOT/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS 2 from PyPI wheels: the venv is itself an ament prefix.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
fi
[ -f "$_SAM4D_ROOT/.dev_ws/install/local_setup.bash" ] && source "$_SAM4D_ROOT/.dev_ws/install/local_setup.bash"
[ -f "$_SAM4D_ROOT/install/local_setup.bash" ] && source "$_SAM4D_ROOT/install/local_setup.bash"
unset _SAM4D_ROOT
