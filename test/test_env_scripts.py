# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""scripts/env.sh and scripts/ros_checks.sh as a user's shell sees them (#16 items 3 and 4)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash(script: str, env_extra=None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "ROS_DISTRO")}
    env.update(env_extra or {})
    r = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _fake_ros(tmp_path) -> Path:
    prefix = tmp_path / "opt_ros"
    (prefix / "share" / "tf2_msgs").mkdir(parents=True)
    (prefix / "share" / "tf2_msgs" / "package.xml").write_text("<package><name>tf2_msgs</name></package>")
    return prefix


def test_real_tf2_msgs_is_found_outside_the_dev_workspace(tmp_path):
    prefix = _fake_ros(tmp_path)
    dev = tmp_path / "dev_ws"
    (dev / "install" / "share" / "tf2_msgs").mkdir(parents=True)
    (dev / "install" / "share" / "tf2_msgs" / "package.xml").write_text("<package/>")
    check = f'source scripts/ros_checks.sh; if _sam4d_real_tf2_msgs "{dev}"; then echo "real $_SAM4D_REAL_TF2"; ' \
            'else echo none; fi'
    # only the dev stand-in on the path: not a real one
    assert "none" in _bash(check, {"AMENT_PREFIX_PATH": f"{dev}/install"})
    out = _bash(check, {"AMENT_PREFIX_PATH": f"{dev}/install:{prefix}"})
    assert f"real {prefix}" in out


def test_env_sh_puts_the_executables_on_path():
    if not (ROOT / "install" / "lib" / "sam4d_ros" / "sam4d_node").exists():
        pytest.skip("the package is not built here (make setup)")
    out = _bash("source scripts/env.sh >/dev/null 2>&1; command -v sam4d_node sam4d_bag_replay sam4d_process_bag")
    lines = out.split()
    assert len(lines) == 3 and all(str(ROOT / "install" / "lib" / "sam4d_ros") in x for x in lines), out


def test_env_sh_does_not_hide_a_real_tf2_msgs_behind_the_dev_one(tmp_path):
    if not (ROOT / ".dev_ws" / "install" / "local_setup.bash").exists():
        pytest.skip("no dev-only tf2_msgs here")
    show = 'source scripts/env.sh; echo "AMENT=$AMENT_PREFIX_PATH"'
    plain = _bash(show)
    assert str(ROOT / ".dev_ws") in plain  # no real ROS: the stand-in is used
    prefix = _fake_ros(tmp_path)
    out = _bash(show, {"AMENT_PREFIX_PATH": str(prefix)})
    ament = [ln for ln in out.splitlines() if ln.startswith("AMENT=")][0]
    assert str(ROOT / ".dev_ws") not in ament, out
    assert "not sourcing .dev_ws" in out and str(prefix) in out
