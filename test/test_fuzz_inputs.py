# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Fuzzing of the input decoders (#16 item 11), a short run: every target takes generated input without a crash or
an unclear error (``benchmarks/fuzz_inputs.py`` runs 100k cases and prints the counts)."""

import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("sam4d_ros.msg", reason="needs the built interfaces (source install/setup.bash)")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from sam4d_ros import fuzzing  # noqa: E402


@pytest.mark.parametrize("name", sorted(fuzzing.TARGETS))
def test_decoder_never_crashes(name):
    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fuzzing.TARGETS[name].strategy)
    def run(value):
        fuzzing.check(name, value)

    run()
