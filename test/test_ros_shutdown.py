# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Console entry points as a user runs them (#16 items 1, 3, 5, 6): exit codes, Ctrl-C, resolved names.

Real processes over real DDS: ``sam4d_bag_replay`` on a real MCAP bag, ``sam4d_node`` with a real model.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from sam4d_ros.testing import micro_model_config, node_process, stop_process, tiny_frame, write_frames_bag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_frames_bag(tmp_path_factory.mktemp("bag") / "bag", [tiny_frame(index=i) for i in range(3)])


def _replay(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "sam4d_ros.bag_replay", *map(str, args)], env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_bag_replay_exits_cleanly(bag):
    """It used to abort at exit ("terminate called without an active exception", exit 134): the spin thread was
    still inside the executor when the interpreter finalised."""
    for _ in range(2):
        r = _replay(bag, "--rate", "0", "--delay", "0.1")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "terminate called" not in out and "Traceback" not in out, out
        assert "done: 19 messages" in out, out


def test_bag_replay_with_nothing_to_play_says_so(bag):
    """No loadable topic used to raise KeyError ('/tf_static'): an empty topic list meant "all" to rosbags."""
    r = _replay(bag, "--topics", "/not_in_the_bag")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out and "nothing to replay" in out and "/lidar/points" in out, out
    from sam4d_ros.bag_replay import read_bag

    assert list(read_bag(bag, [])) == []  # no topic asked for: nothing read, not the whole bag


def _wait_for_line(log: Path, text: str, proc, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and text in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _finish(proc, timeout=30.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture
def start_node(tmp_path):
    """``start_node(params, remaps=None) -> (proc, log)``; every node started is stopped at teardown, also when an
    assertion failed first (a node left running disturbs later tests on the same graph)."""
    procs = []

    def start(params, remaps=None):
        log = tmp_path / f"node{len(procs)}.log"
        procs.append(node_process(params, log, remaps=remaps))
        return procs[-1], log

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_ctrl_c_while_the_model_loads_exits_cleanly(start_node, delay):
    """A SIGINT 0.2 s into the load landed inside the sam2 -> hydra imports: raising KeyboardInterrupt there gave
    an AttributeError traceback (exit 1); at other moments CPython re-killed the process with SIGINT (exit -2)."""
    proc, log = start_node({"checkpoint": ""})  # the embedded model: the longest load
    assert _wait_for_line(log, "loading the model", proc, 120), log.read_text()
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    rc = _finish(proc)
    text = log.read_text()
    assert rc == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "interrupted during start-up" in text or "shutting down" in text, text


def test_second_ctrl_c_during_shutdown_is_ignored_and_names_are_resolved(tmp_path, start_node):
    """Two SIGINTs in a row used to print a KeyboardInterrupt traceback from destroy_node; the ready line used to
    show the default topic names instead of the remapped ones."""
    cfg = micro_model_config(tmp_path / "micro.yaml")
    proc, log = start_node({"checkpoint": "random", "model_config": str(cfg), "status_period": 0.2,
                            "tf_backend": "auto"}, remaps={"/lidar/points": "/velodyne_points"})
    assert _wait_for_line(log, "sam4d ready", proc, 120), log.read_text()
    text = log.read_text()
    assert "points /velodyne_points" in text and "points /lidar/points" not in text, text
    assert "TF backend: " in text and "tf_backend auto: tf2_ros is " in text, text  # which backend and why
    # ~/status reports the resolved inputs too
    from std_msgs.msg import String

    from sam4d_ros.testing import RosHarness

    with RosHarness("status_reader") as h:
        got = h.collect(String, "/sam4d/status")
        assert h.wait_for(lambda: len(got) > 0, 30.0)
        status = json.loads(got[-1][1].data)
    assert status["inputs"]["points"] == "/velodyne_points", status["inputs"]
    assert status["tf_backend_reason"], status
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rc = _finish(proc)
    text = log.read_text()
    assert rc == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "shutting down" in text, text
