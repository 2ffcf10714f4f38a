# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Foundation: package layout, install space, pip packaging without ROS, model free of ROS imports."""

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install"
ROS_MODULE_PREFIXES = ("rclpy", "rosidl", "rosbag2", "rcl_", "ament_", "tf2", "launch", "sensor_msgs", "std_msgs",
                       "geometry_msgs", "visualization_msgs", "nav_msgs", "builtin_interfaces", "message_filters",
                       "cv_bridge", "sam4d_ros", "rmw", "diagnostic_msgs")


def _is_ros_module(name: str) -> bool:
    top = name.split(".")[0]
    return any(top == p.rstrip("_") or top.startswith(p) for p in ROS_MODULE_PREFIXES)


def test_layout():
    for p in ["sam4d_ros", "sam4d_model", "launch/sam4d.launch.py", "config/sam4d.yaml", "msg", "srv", "test",
              "package.xml", "CMakeLists.txt", "pyproject.toml", "README.md", "LICENSE", "requirements.txt",
              ".ci/run"]:
        assert (REPO / p).exists(), p
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_package_xml_format3_with_rosdep_keys():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "sam4d_ros" and root.findtext("license") == "Apache-2.0"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for key in ["ament_cmake", "rosidl_default_generators", "rosidl_default_runtime", "rclpy", "sensor_msgs",
                "geometry_msgs", "std_msgs", "visualization_msgs", "tf2_ros", "tf2_msgs", "launch_ros",
                "python3-numpy", "python3-torch", "launch_pytest"]:
        assert key in deps, key
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    try:
        from catkin_pkg.package import parse_package
    except ImportError:
        return
    pkg = parse_package(str(REPO / "package.xml"))
    pkg.validate()


@pytest.mark.skipif(not (INSTALL / "share" / "sam4d_ros").is_dir(), reason="no colcon install space (run make setup)")
def test_colcon_install_space():
    for exe in ["sam4d_node", "sam4d_bag_replay", "sam4d_process_bag"]:
        p = INSTALL / "lib" / "sam4d_ros" / exe
        assert p.exists() and os.access(p, os.X_OK), p
    share = INSTALL / "share" / "sam4d_ros"
    for f in ["package.xml", "launch/sam4d.launch.py", "config/sam4d.yaml", "msg/Prompt.msg",
              "srv/AddPrompts.srv", "msg/ObjectMasks.msg"]:
        assert (share / f).exists(), f
    site = next((INSTALL / "lib").glob("python3*/site-packages"))
    for f in ["sam4d_ros/msg/__init__.py", "sam4d_ros/srv/__init__.py", "sam4d_ros/__init__.py",
              "sam4d_model/__init__.py"]:
        assert (site / f).exists(), f


def test_launch_file_is_valid_python_using_launch_ros():
    src = (REPO / "launch" / "sam4d.launch.py").read_text()
    tree = ast.parse(src)
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "launch_ros" in src and "sam4d_node" in src


def _python_files(folder):
    return [p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts]


def test_model_package_imports_no_ros_module_statically():
    bad = []
    for path in _python_files("sam4d_model"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            bad += [f"{path.relative_to(REPO)}: {m}" for m in mods if _is_ros_module(m)]
    assert not bad, bad


def test_model_package_imports_no_ros_module_at_runtime(tmp_path):
    # Import every sam4d_model module in a fresh interpreter where any ROS import raises.
    code = f"""
import importlib, pkgutil, sys
PREFIXES = {ROS_MODULE_PREFIXES!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if any(top == p.rstrip('_') or top.startswith(p) for p in PREFIXES):
            raise ImportError('ROS module imported from sam4d_model: ' + name)
        return None
sys.meta_path.insert(0, Block())
import sam4d_model
failed = []
for m in pkgutil.walk_packages(sam4d_model.__path__, 'sam4d_model.'):
    try:
        importlib.import_module(m.name)
    except ImportError as e:
        if 'ROS module' in str(e):
            failed.append(f'{{m.name}}: {{e}}')
print('\\n'.join(failed))
sys.exit(1 if failed else 0)
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_pip_install_without_ros(tmp_path):
    # `pip install .` builds a wheel holding sam4d_model and the console tools, and asks for no ROS package.
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("sam4d_model-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert any(n.startswith("sam4d_model/modeling/") or n == "sam4d_model/types.py" for n in names)
    assert not any(n.startswith("sam4d_ros/") for n in names)
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    assert requires and not [r for r in requires if r.lower().startswith(("ros-", "rclpy", "colcon"))], requires
    assert "[console_scripts]" in entry
