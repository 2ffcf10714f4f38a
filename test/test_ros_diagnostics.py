# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``/diagnostics``: the health rules (pure Python) and the node's DiagnosticArray over real DDS; config file sync."""

import time
from pathlib import Path

import pytest
import yaml

from sam4d_ros.diagnostics import ERROR, OK, WARN, HealthRules, PipelineHealth, key_values

REPO = Path(__file__).resolve().parents[1]
EXPECTED_KEYS = {"frames processed", "fps", "processing time last (ms)", "processing time p50 (ms)",
                 "latency p50 (ms)", "latency p95 (ms)", "skipped frames", "unpaired clouds", "TF failures",
                 "time jumps", "tracked objects", "stored memories"}


def _status(frames=10, p95=50.0, **counters):
    return {"frames_processed": frames, "fps": 10.0, "processing_time_ms": {"last": 20.0, "p50": 20.0},
            "latency_ms": {"last": 40.0, "p50": 40.0, "p95": p95}, "counters": dict(counters), "objects": [],
            "tracker": {"stored_memories": 0}, "last_error": ""}


def test_health_rules():
    h = PipelineHealth(HealthRules(latency_warn=0.1, stale_timeout=2.0))
    assert h.evaluate(_status(0), 100.0, None, None, None) == (OK, "waiting for point clouds")
    assert h.evaluate(_status(), 100.0, 90.0, 99.9, 99.8)[0] == OK
    level, msg = h.evaluate(_status(sync_skipped=3, tf_unavailable=1), 101.0, 90.0, 100.9, 100.8)
    assert level == WARN and "3 frames skipped" in msg and "1 TF failures" in msg
    assert h.evaluate(_status(sync_skipped=3, tf_unavailable=1), 102.0, 90.0, 101.9, 101.8)[0] == OK  # no increase
    level, msg = h.evaluate(_status(p95=150.0, sync_skipped=3, tf_unavailable=1), 103.0, 90.0, 102.9, 102.8)
    assert level == WARN and "latency p95 150 ms > 100 ms" in msg
    # clouds keep coming, nothing processed for 3 s: ERROR; when the clouds stop too, back to OK (idle)
    level, msg = h.evaluate(_status(sync_skipped=3, tf_unavailable=1), 106.0, 90.0, 105.9, 103.0)
    assert level == ERROR and "no frame processed for 3.0 s" in msg
    assert h.evaluate(_status(sync_skipped=3, tf_unavailable=1), 120.0, 90.0, 105.9, 103.0)[0] == OK
    # never processed anything since the first cloud
    h2 = PipelineHealth(HealthRules(latency_warn=0.0, stale_timeout=2.0))
    level, msg = h2.evaluate(_status(0, p95=None), 10.0, 7.0, 9.9, None)
    assert level == ERROR and "no frame processed yet" in msg
    assert EXPECTED_KEYS <= {k for k, _ in key_values(_status())}


def test_config_file_documents_every_parameter():
    from sam4d_ros.node import PARAMETERS

    params = yaml.safe_load((REPO / "config" / "sam4d.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        assert params[name] == default, name


@pytest.mark.ros
def test_node_publishes_diagnostics_over_dds():
    pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")
    pytest.importorskip("tf2_msgs.msg")
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import PointCloud2

    from sam4d_ros.testing import RosHarness, SensorPublishers, frame_messages, tiny_frame

    frame = tiny_frame(500, 64, 48)
    with RosHarness() as h:
        diags = h.collect(DiagnosticArray, "/diagnostics")
        out = h.collect(PointCloud2, "/sam4d/points")
        h.start_sam4d({"checkpoint": "random", "diagnostics_period": 0.2, "diagnostics_stale_timeout": 1.0,
                       "diagnostics_latency_warn": 0.0})
        pubs = SensorPublishers(h)

        def ours():
            return [s for _, a in list(diags) for s in a.status if s.name == "sam4d: pipeline"]

        def wait_status(pred, timeout):
            h.wait_for(lambda: any(pred(s) for s in ours()), timeout)
            found = [s for s in ours() if pred(s)]
            assert found, [(s.level, s.message) for s in ours()[-5:]]
            return found[-1]

        st = wait_status(lambda s: True, 10.0)
        assert st.hardware_id == "sam4d" and st.level == DiagnosticStatus.OK, (st.level, st.message)
        assert EXPECTED_KEYS <= {kv.key for kv in st.values}

        t0 = time.time_ns()
        for k in range(3):
            n = len(out)
            pubs.send(frame_messages(frame, t0 + k * 100_000_000))
            assert h.wait_for(lambda: len(out) > n, 30.0), f"no output for frame {k}"
        st = wait_status(lambda s: s.level == DiagnosticStatus.OK and dict(
            (kv.key, kv.value) for kv in s.values)["frames processed"] == "3", 5.0)
        vals = {kv.key: kv.value for kv in st.values}
        assert float(vals["processing time p50 (ms)"]) > 0 and vals["tracked objects"] == "0"

        # clouds without images: WARN (unpaired), then ERROR (nothing processed while inputs arrive)
        end = time.monotonic() + 2.0
        k = 3
        while time.monotonic() < end:
            pubs.send(frame_messages(frame, t0 + k * 100_000_000), image=False)
            k += 1
            time.sleep(0.05)
        assert any(s.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR) and "clouds without an image"
                   in s.message for s in ours()), [(s.level, s.message) for s in ours()[-5:]]
        st = wait_status(lambda s: s.level == DiagnosticStatus.ERROR, 3.0)
        assert "no frame processed" in st.message
