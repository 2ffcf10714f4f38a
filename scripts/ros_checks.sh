# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
# Shell helpers shared by scripts/setup.sh and scripts/env.sh (source me).

# _sam4d_real_tf2_msgs DEV_WS: true (0) when an ament prefix on AMENT_PREFIX_PATH outside DEV_WS (or the
# sourced ROS distro, /opt/ros/$ROS_DISTRO) provides tf2_msgs; sets _SAM4D_REAL_TF2 to that prefix.
_sam4d_real_tf2_msgs() {
  local dev="$1" prefix
  local IFS=':'
  for prefix in ${AMENT_PREFIX_PATH:-} ${ROS_DISTRO:+/opt/ros/$ROS_DISTRO}; do
    [ -n "$prefix" ] || continue
    case "$prefix" in "$dev"|"$dev"/*) continue;; esac
    if [ -f "$prefix/share/tf2_msgs/package.xml" ]; then
      _SAM4D_REAL_TF2="$prefix"
      return 0
    fi
  done
  return 1
}
