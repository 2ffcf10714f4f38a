# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Safe file I/O shared by the data tools: atomic writes, a restricted unpickler, input validation."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


class DataError(ValueError):
    """Invalid, corrupt or missing input data (always raised with the offending path or field in the message)."""


class UnsafePickleError(DataError):
    """A pickle referenced a class or function outside the allowed set (builtin containers, numbers, numpy)."""


# Globals a pickle of builtin containers / numbers / strings / numpy arrays legitimately needs.
_ALLOWED_GLOBALS = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
    ("builtins", "str"), ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "bool"),
    ("builtins", "slice"), ("builtins", "range"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes (numpy arrays) go through codecs.encode(str, 'latin1')
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only admits builtin containers, numbers, strings and numpy arrays/scalars/dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        # numpy scalar/dtype classes such as numpy.float64 or numpy.dtypes.Float64DType
        if module in ("numpy", "numpy.dtypes") and (
            name in np.sctypeDict or name.endswith("DType")
        ):
            obj = super().find_class(module, name)
            if isinstance(obj, type) and (issubclass(obj, np.generic) or issubclass(obj, np.dtype)):
                return obj
        raise UnsafePickleError(
            f"refusing to unpickle global '{module}.{name}': only builtin containers, numbers, strings "
            "and numpy arrays are allowed in SAM4D meta files")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing to unpickle a persistent id")


def safe_pickle_load(path: str | os.PathLike) -> Any:
    """Load an untrusted pickle file with :class:`RestrictedUnpickler`; raises :class:`DataError` on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    return safe_pickle_loads(data, source=str(path))


def safe_pickle_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Load untrusted pickle bytes with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{source}: {e}") from None
    except Exception as e:  # truncated / corrupt pickles raise many different exception types
        raise DataError(f"{source}: corrupt or truncated pickle: {type(e).__name__}: {e}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; renamed onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(suffix or path.suffix) + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` atomically (temporary file in the same directory, then ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory path (not yet created) beside ``path``; moved onto ``path`` on success.

    Used for rosbag2 output (a bag is a directory). On failure nothing is left at ``path``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists already (use overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_parent = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_parent / path.name  # keep the bag's own name (rosbags names the storage file after the folder)
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".{path.name}.old.{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)


def check_matrix(m: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    """Return ``m`` as a finite float64 array of the given shape, or raise :class:`DataError` naming ``what``."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: not a numeric matrix ({e})") from None
    if a.shape != shape:
        raise DataError(f"{what}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what}: contains non-finite values")
    return a


def check_pose(m: Any, what: str, rigid_tol: float = 1e-3) -> np.ndarray:
    """Validate a 4x4 rigid transform (finite, last row 0 0 0 1, orthonormal rotation)."""
    a = check_matrix(m, (4, 4), what)
    if not np.allclose(a[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{what}: last row must be [0, 0, 0, 1], got {a[3].tolist()}")
    r = a[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=rigid_tol) or np.linalg.det(r) < 0:
        raise DataError(f"{what}: rotation part is not a proper rotation")
    return a


def safe_join(root: Path, rel: str, what: str) -> Path:
    """Join an (untrusted) relative path onto ``root``, refusing absolute paths and ``..`` escapes."""
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{what}: expected a relative path string, got {rel!r}")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"{what}: path {rel!r} must be relative to the dataset root without '..'")
    return root / p
