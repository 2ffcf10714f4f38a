# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""TF buffer: static/dynamic transforms, slerp interpolation, chains, extrapolation and connectivity errors."""

import numpy as np
import pytest

from sam4d_model.data.geometry import invert_transform, make_transform, matrix_to_quat, quat_to_matrix, rot_z, slerp
from sam4d_model.data.tf_buffer import ConnectivityError, ExtrapolationError, TFBuffer


def test_quaternion_roundtrip_and_slerp():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        r = quat_to_matrix(q)
        q2 = matrix_to_quat(r)
        assert np.allclose(quat_to_matrix(q2), r, atol=1e-12)
    q0 = matrix_to_quat(rot_z(0.0))
    q1 = matrix_to_quat(rot_z(1.0))
    assert np.allclose(quat_to_matrix(slerp(q0, q1, 0.25)), rot_z(0.25), atol=1e-12)


def test_interpolation_static_chain_and_errors():
    tf = TFBuffer()
    s = 1_000_000_000
    tf.set_transform("odom", "base_link", s, make_transform(rot_z(0.0), (0, 0, 0)))
    tf.set_transform("odom", "base_link", 2 * s, make_transform(rot_z(0.5), (10, 0, 0)))
    b2l = make_transform(rot_z(0.1), (1.0, 0.0, 1.8))
    tf.set_transform("base_link", "lidar", 0, b2l, static=True)
    tf.set_transform("base_link", "cam", 0, make_transform(rot_z(-0.2), (1.5, 0.2, 1.6)), static=True)

    mid = tf.lookup("odom", "base_link", int(1.5 * s))
    assert np.allclose(mid, make_transform(rot_z(0.25), (5, 0, 0)), atol=1e-12)
    # exact samples are returned exactly
    assert np.allclose(tf.lookup("odom", "base_link", 2 * s), make_transform(rot_z(0.5), (10, 0, 0)), atol=1e-15)
    # chains: odom <- lidar and lidar <- cam
    assert np.allclose(tf.lookup("odom", "lidar", s), b2l, atol=1e-12)
    l2c = tf.lookup("lidar", "cam", int(1.3 * s))
    assert np.allclose(l2c, invert_transform(b2l) @ tf.lookup("base_link", "cam", 0), atol=1e-12)
    assert np.allclose(tf.lookup("cam", "lidar", s) @ l2c, np.eye(4), atol=1e-12)
    # latest
    assert np.allclose(tf.lookup("odom", "base_link"), make_transform(rot_z(0.5), (10, 0, 0)), atol=1e-12)
    with pytest.raises(ExtrapolationError):
        tf.lookup("odom", "lidar", 3 * s)
    with pytest.raises(ExtrapolationError):
        tf.lookup("odom", "lidar", s - 1)
    with pytest.raises(ConnectivityError):
        tf.lookup("odom", "nowhere", s)
    tf.set_transform("map", "other", s, np.eye(4))
    with pytest.raises(ConnectivityError):
        tf.lookup("odom", "other", s)
    assert not tf.can_transform("odom", "other", s)
    tol = TFBuffer(tolerance_ns=5)
    tol.set_transform("a", "b", 100, np.eye(4))
    tol.set_transform("a", "b", 200, np.eye(4))
    assert np.allclose(tol.lookup("a", "b", 204), np.eye(4))


def test_out_of_order_and_invalid():
    tf = TFBuffer()
    tf.set_transform("a", "b", 300, make_transform(None, (3, 0, 0)))
    tf.set_transform("a", "b", 100, make_transform(None, (1, 0, 0)))
    assert np.allclose(tf.lookup("a", "b", 200)[:3, 3], (2, 0, 0))
    with pytest.raises(ValueError):
        tf.set_transform("a", "b", 400, np.full((4, 4), np.nan))
    with pytest.raises(ValueError):
        tf.set_transform("a", "b", 400, np.eye(3))
