# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Read and write the Waymo-4DSeg layout released with SAM4D, plus a torch ``Dataset`` of clips.

Layout under a root folder::

    meta_infos/<seq>.pkl                      {'seq_name', 'frames': [frame_info, ...]}  (written last)
    pcds/<seq>/<ts>.npz                       points under key 'data' (N x C float32, xyz first)
    undistort_images/<seq>/<ts>/<cam>.jpg     (and/or .png: lossless; readers prefer .png when present)
    sam4d_labels/<seq>/<ts>.json              {'sensors': {<cam> | 'LiDAR_TOP': {'objects': [...]}}}

``frame_info``: ``{'cams_info': {cam: {'data_path', 'camera_intrinsics' 3x3, 'camera2lidar' 4x4}},
'path': {'pcd', 'sam4d_label'}, 'lidar2world' 4x4, 'timestamp' (int microseconds), 'frame_idx'}``; paths are relative
to the root. Label objects: ``{'object_id', 'score', 'volume' (mask area: pixels or points), 'semantic',
'image_mask' | 'lidar_mask'}`` with COCO RLE masks (H x W for images, N x 1 for LiDAR); ``object_id == -1`` is an
ignore mask (LiDAR). Our writer also stores ``fields`` (column names), ``lidar2world``, ``timestamp`` and
``cams_info`` (JSON) inside each npz so an interrupted write can resume without the meta pickle; readers of the
original layout ignore those keys.

The meta pickle is untrusted: it is loaded with a restricted unpickler (builtin containers, numbers, strings and
numpy arrays only). Every file is written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple
from typing import Sequence as Seq

import cv2
import numpy as np

from ..types import CameraFrame, Frame, FrameLabels
from .io_utils import DataError, atomic_path, atomic_write_bytes, check_matrix, check_pose, safe_join, safe_pickle_load

LIDAR_SENSOR = "LiDAR_TOP"
IMAGE_FORMATS = ("jpg", "png", "both")
DEFAULT_FIELDS = ("x", "y", "z", "intensity")


# ---------------------------------------------------------------------------------------------------------- RLE
def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE (``{'size': [H, W], 'counts': str}``) of a 2-D boolean mask (use ``(N, 1)`` for LiDAR masks)."""
    from pycocotools import mask as mask_utils

    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8).reshape(mask.shape[0], -1))
    rle = mask_utils.encode(m)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: Any, shape: Optional[Tuple[int, int]] = None, what: str = "mask") -> np.ndarray:
    """Decode a COCO RLE dict to a boolean ``(H, W)`` array; checks ``shape`` if given."""
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DataError(f"{what}: not a COCO RLE dict")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise DataError(f"{what}: bad RLE size {size!r} (two non-negative integers)")
    if shape is not None and tuple(int(s) for s in size) != tuple(shape):
        raise DataError(f"{what}: RLE size {list(size)} does not match expected {list(shape)}")
    counts = rle["counts"]
    try:
        if isinstance(counts, list):  # uncompressed RLE
            if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**32 for c in counts):
                raise DataError(f"{what}: uncompressed RLE counts must be integers in 0..2^32-1")
            r = mask_utils.frPyObjects({"size": list(size), "counts": counts}, int(size[0]), int(size[1]))
        elif isinstance(counts, (str, bytes)):
            r = {"size": [int(size[0]), int(size[1])], "counts": counts.encode("ascii") if isinstance(counts, str)
                 else counts}
        else:
            raise DataError(f"{what}: RLE counts must be a string or a list, got {type(counts).__name__}")
        m = mask_utils.decode(r)
    except DataError:
        raise
    except Exception as e:  # pycocotools raises plain exceptions on corrupt counts; non-ASCII strings too
        raise DataError(f"{what}: cannot decode RLE: {type(e).__name__}: {e}") from None
    return m.astype(bool).reshape(int(size[0]), int(size[1]))


# ---------------------------------------------------------------------------------------------------------- images
def _encode_image(image: np.ndarray, ext: str, jpeg_quality: int = 95) -> bytes:
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode("." + ext, bgr, params)
    if not ok:
        raise DataError(f"cannot encode image as {ext}")
    return buf.tobytes()


def read_image(path: Path) -> np.ndarray:
    """Read an RGB uint8 image; raises :class:`DataError` if missing or corrupt."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"{path}: cannot read image: {e}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DataError(f"{path}: corrupt or truncated image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _image_path(root: Path, rel: str, prefer_lossless: bool, what: str) -> Path:
    p = safe_join(root, rel, what)
    if prefer_lossless and p.suffix.lower() in (".jpg", ".jpeg"):
        png = p.with_suffix(".png")
        if png.exists():
            return png
    if not p.exists():
        alt = [p.with_suffix(s) for s in (".png", ".jpg", ".jpeg") if p.with_suffix(s).exists()]
        if alt:
            return alt[0]
        raise DataError(f"{what}: image file {p} is missing")
    return p


# ---------------------------------------------------------------------------------------------------------- points
def save_npz(f, compresslevel: int = 1, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` (same file format) but with a fast zlib level."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for k, v in arrays.items():
            with zf.open(k + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(v), allow_pickle=False)


def read_points(path: Path) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """Read ``(points (N, C) float32, field names)`` from a layout npz; clear errors for corrupt files."""
    if not path.exists():
        raise DataError(f"{path}: point cloud file is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "data" not in z.files:
                raise DataError(f"{path}: npz has no 'data' array (keys: {z.files})")
            pts = z["data"]
            fields = tuple(str(s) for s in z["fields"]) if "fields" in z.files else ()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy raise many types for a damaged file
        raise DataError(f"{path}: corrupt or truncated npz: {type(e).__name__}: {e}") from None
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise DataError(f"{path}: points must be N x C with C >= 3, got shape {pts.shape}")
    if not np.issubdtype(pts.dtype, np.number):
        raise DataError(f"{path}: points must be numeric, got {pts.dtype}")
    pts = pts.astype(np.float32, copy=False)
    if not np.all(np.isfinite(pts[:, :3])):
        raise DataError(f"{path}: points contain non-finite xyz")
    if len(fields) != pts.shape[1]:
        fields = tuple(DEFAULT_FIELDS[:pts.shape[1]]) + tuple(f"c{i}" for i in range(4, pts.shape[1]))
    return pts, fields


def _npz_extra(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in ("lidar2world", "timestamp", "cams_info", "fields", "frame_idx") if k in z.files}
        out["num_points"] = int(z["data"].shape[0])
    return out


# ---------------------------------------------------------------------------------------------------------- labels
def labels_to_json(labels: FrameLabels, num_points: int, camera_names: Iterable[str], frame_idx: int = 0,
                   timestamp: int = 0) -> dict:
    """SAM4D label dict (``{'sensors': ...}``) of a :class:`FrameLabels` (RLE masks, one object per id)."""
    sensors: Dict[str, Any] = {}
    classes = {int(k): str(v) for k, v in (labels.object_classes or {}).items()}
    pi = np.asarray(labels.point_instance).reshape(-1)
    if pi.shape[0] != num_points:
        raise DataError(f"labels: point_instance has {pi.shape[0]} entries for {num_points} points")
    objs = []
    for k in np.unique(pi):
        k = int(k)
        if k == 0:
            continue
        m = pi == k
        objs.append({"object_id": k, "score": 1.0, "volume": int(m.sum()),
                     "semantic": "ignore" if k == -1 else classes.get(k, "unknown"),
                     "lidar_mask": encode_mask(m.reshape(-1, 1))})
    sensors[LIDAR_SENSOR] = {"objects": objs}
    for cam in camera_names:
        if cam not in (labels.image_instance or {}):
            continue
        im = np.asarray(labels.image_instance[cam])
        objs = []
        for k in np.unique(im):
            k = int(k)
            if k == 0:
                continue
            m = im == k
            objs.append({"object_id": k, "score": 1.0, "volume": int(m.sum()),
                         "semantic": "ignore" if k == -1 else classes.get(k, "unknown"), "image_mask": encode_mask(m)})
        sensors[cam] = {"objects": objs}
    return {"frame_idx": int(frame_idx), "timestamp": int(timestamp), "sensors": sensors}


def labels_from_json(d: Any, num_points: int, image_shapes: Dict[str, Tuple[int, int]],
                     class_ids: Optional[Dict[str, int]] = None, what: str = "labels") -> FrameLabels:
    """:class:`FrameLabels` from a SAM4D label dict; ``class_ids`` maps semantic names to ids (grown on demand)."""
    if not isinstance(d, dict) or not isinstance(d.get("sensors"), dict):
        raise DataError(f"{what}: expected a dict with 'sensors'")
    class_ids = class_ids if class_ids is not None else {}
    obj_cls: Dict[int, str] = {}

    def cid(name: str) -> int:
        if name == "ignore":
            return -1
        if name not in class_ids:
            class_ids[name] = max([0, *class_ids.values()]) + 1
        return class_ids[name]

    def objects(sensor: str) -> List[dict]:
        s = d["sensors"].get(sensor) or {}
        objs = s.get("objects", []) if isinstance(s, dict) else None
        if not isinstance(objs, list):
            raise DataError(f"{what}: sensors.{sensor}.objects must be a list")
        return objs

    def obj_id(o: dict, where: str) -> int:
        k = o.get("object_id", 0)
        if isinstance(k, bool) or not isinstance(k, (int, float, str)):
            raise DataError(f"{what}: {where}: object_id must be an integer, got {k!r}")
        try:
            return int(k)
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{what}: {where}: object_id must be an integer, got {k!r}") from None

    pi = np.zeros(num_points, dtype=np.int32)
    pc = np.zeros(num_points, dtype=np.int32)
    for o in objects(LIDAR_SENSOR):
        if not isinstance(o, dict) or "lidar_mask" not in o:
            continue
        k = obj_id(o, "LiDAR object")
        m = decode_mask(o["lidar_mask"], (num_points, 1), f"{what}: LiDAR object {k}").reshape(-1)
        pi[m] = k
        sem = str(o.get("semantic", "unknown"))
        pc[m] = cid(sem)
        if k > 0:
            obj_cls[k] = sem
    ii: Dict[str, np.ndarray] = {}
    ic: Dict[str, np.ndarray] = {}
    for cam, shape in image_shapes.items():
        if cam not in d["sensors"]:
            continue
        a = np.zeros(shape, dtype=np.int32)
        c = np.zeros(shape, dtype=np.int32)
        for o in objects(cam):
            if not isinstance(o, dict) or "image_mask" not in o:
                continue
            k = obj_id(o, f"{cam} object")
            m = decode_mask(o["image_mask"], shape, f"{what}: {cam} object {k}")
            a[m] = k
            sem = str(o.get("semantic", "unknown"))
            c[m] = cid(sem)
            if k > 0:
                obj_cls[k] = sem
        ii[cam], ic[cam] = a, c
    return FrameLabels(point_instance=pi, image_instance=ii, point_class=pc, image_class=ic,
                       object_classes=dict(sorted(obj_cls.items())))


# ---------------------------------------------------------------------------------------------------------- writer
def _check_frame(frame: Frame) -> None:
    p = np.asarray(frame.points)
    if p.ndim != 2 or p.shape[1] < 3:
        raise DataError(f"frame {frame.index}: points must be N x C with C >= 3, got {p.shape}")
    if not np.all(np.isfinite(p[:, :3])):
        raise DataError(f"frame {frame.index}: points contain non-finite xyz")
    check_pose(frame.lidar2world, f"frame {frame.index}: lidar2world")
    if not np.isfinite(frame.timestamp):
        raise DataError(f"frame {frame.index}: non-finite timestamp")
    names = set()
    for cam in frame.cameras:
        if cam.name in names or not cam.name or "/" in cam.name or cam.name == LIDAR_SENSOR:
            raise DataError(f"frame {frame.index}: bad or duplicate camera name {cam.name!r}")
        names.add(cam.name)
        img = np.asarray(cam.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise DataError(f"frame {frame.index}: camera {cam.name}: image must be H x W x 3 uint8, got "
                            f"{img.shape} {img.dtype}")
        check_matrix(cam.intrinsics, (3, 3), f"frame {frame.index}: camera {cam.name}: intrinsics")
        check_pose(cam.camera2lidar, f"frame {frame.index}: camera {cam.name}: camera2lidar")


def timestamp_us(frame: Frame) -> int:
    """Integer-microsecond timestamp used as the file name of a frame."""
    return int(round(float(frame.timestamp) * 1e6))


class SequenceWriter:
    """Write one sequence frame by frame; the meta pickle is written (atomically) by :meth:`close` only.

    Args:
        root: dataset root. seq_name: sequence name.
        image_format: ``'jpg'`` (default, like the released data), ``'png'`` (lossless) or ``'both'``
            (``data_path`` points at the jpg, a png sits beside it; readers prefer the png).
        resume: keep frames already on disk (complete npz) and continue. overwrite: delete the sequence first.
        point_fields: names of the point columns (stored in each npz under ``fields``).
        extra_meta: extra keys for the meta dict (must be builtin containers / numbers / strings / numpy arrays).

    """

    def __init__(self, root: str | Path, seq_name: str, image_format: str = "jpg", jpeg_quality: int = 95,
                 resume: bool = False, overwrite: bool = False, point_fields: Optional[Seq[str]] = None,
                 extra_meta: Optional[dict] = None):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}")
        if not seq_name or "/" in seq_name or seq_name.startswith("."):
            raise ValueError(f"bad sequence name {seq_name!r}")
        self.root = Path(root)
        self.seq = seq_name
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.point_fields = tuple(point_fields) if point_fields else None
        self.extra_meta = dict(extra_meta or {})
        self.meta_path = self.root / "meta_infos" / f"{seq_name}.pkl"
        if overwrite:
            self.meta_path.unlink(missing_ok=True)
            for sub in ("pcds", "undistort_images", "sam4d_labels", "depth"):
                shutil.rmtree(self.root / sub / seq_name, ignore_errors=True)
        elif self.meta_path.exists() and not resume:
            raise FileExistsError(f"{self.meta_path} exists (use overwrite=True or resume=True)")
        self.frames: Dict[int, dict] = {}
        self._closed = False

    # paths
    def _rel(self, ts: int, kind: str, cam: str = "", ext: str = "") -> str:
        if kind == "pcd":
            return f"pcds/{self.seq}/{ts}.npz"
        if kind == "label":
            return f"sam4d_labels/{self.seq}/{ts}.json"
        if kind == "depth":
            return f"depth/{self.seq}/{ts}/{cam}.npz"
        return f"undistort_images/{self.seq}/{ts}/{cam}.{ext}"

    def frame_complete(self, ts: int, cameras: Iterable[str]) -> bool:
        """Whether frame ``ts`` (microseconds) is fully on disk (the npz is written last)."""
        if not (self.root / self._rel(ts, "pcd")).exists():
            return False
        exts = {"jpg": ["jpg"], "png": ["png"], "both": ["jpg", "png"]}[self.image_format]
        return all((self.root / self._rel(ts, "img", c, e)).exists() for c in cameras for e in exts)

    def add_existing(self, ts: int, frame_idx: Optional[int] = None) -> None:
        """Register a frame already on disk (resume), reading its meta from the npz."""
        pcd = self.root / self._rel(ts, "pcd")
        try:
            ex = _npz_extra(pcd)
            cams = json.loads(str(ex["cams_info"]))
        except Exception as e:
            raise DataError(f"{pcd}: cannot resume from this frame ({e}); delete it or use overwrite") from None
        info = {
            "timestamp": int(ts), "frame_idx": int(frame_idx if frame_idx is not None else ex.get("frame_idx", 0)),
            "cams_info": {c: {"data_path": v["data_path"],
                              "camera_intrinsics": np.asarray(v["camera_intrinsics"], dtype=np.float64),
                              "camera2lidar": np.asarray(v["camera2lidar"], dtype=np.float64),
                              "width": int(v["width"]), "height": int(v["height"])} for c, v in cams.items()},
            "path": {"pcd": self._rel(ts, "pcd"),
                     "sam4d_label": self._rel(ts, "label") if (self.root / self._rel(ts, "label")).exists() else None},
            "lidar2world": np.asarray(ex["lidar2world"], dtype=np.float64),
            "num_points": ex["num_points"],
        }
        self.frames[int(ts)] = info

    def add(self, frame: Frame, labels: Optional[FrameLabels] = None,
            depth: Optional[Dict[str, np.ndarray]] = None) -> int:
        """Write one frame (images, labels, then the npz); returns its timestamp in microseconds."""
        if self._closed:
            raise RuntimeError("writer closed")
        _check_frame(frame)
        ts = timestamp_us(frame)
        if ts in self.frames:
            raise DataError(f"duplicate timestamp {ts} us in sequence {self.seq}")
        cams_info = {}
        for cam in frame.cameras:
            exts = {"jpg": ["jpg"], "png": ["png"], "both": ["jpg", "png"]}[self.image_format]
            for ext in exts:
                atomic_write_bytes(self.root / self._rel(ts, "img", cam.name, ext),
                                   _encode_image(cam.image, ext, self.jpeg_quality))
            cams_info[cam.name] = {"data_path": self._rel(ts, "img", cam.name, exts[0]),
                                   "camera_intrinsics": np.asarray(cam.intrinsics, dtype=np.float64).copy(),
                                   "camera2lidar": np.asarray(cam.camera2lidar, dtype=np.float64).copy(),
                                   "width": cam.width, "height": cam.height}
            if depth is not None and cam.name in depth:
                with atomic_path(self.root / self._rel(ts, "depth", cam.name)) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez_compressed(f, depth=np.asarray(depth[cam.name], dtype=np.float32))
        label_rel = None
        if labels is not None:
            lj = labels_to_json(labels, frame.num_points, [c.name for c in frame.cameras], frame.index, ts)
            label_rel = self._rel(ts, "label")
            atomic_write_bytes(self.root / label_rel, json.dumps(lj, separators=(",", ":")).encode())
        pts = np.ascontiguousarray(np.asarray(frame.points, dtype=np.float32))
        fields = self.point_fields if self.point_fields and len(self.point_fields) == pts.shape[1] else (
            tuple(DEFAULT_FIELDS[:pts.shape[1]]) + tuple(f"c{i}" for i in range(4, pts.shape[1])))
        cams_json = json.dumps({c: {"data_path": v["data_path"], "camera_intrinsics": v["camera_intrinsics"].tolist(),
                                    "camera2lidar": v["camera2lidar"].tolist(), "width": v["width"],
                                    "height": v["height"]} for c, v in cams_info.items()})
        l2w = np.asarray(frame.lidar2world, dtype=np.float64)
        with atomic_path(self.root / self._rel(ts, "pcd")) as tmp:
            with open(tmp, "wb") as f:
                save_npz(f, data=pts, fields=np.array(fields), lidar2world=l2w,
                                    timestamp=np.int64(ts), frame_idx=np.int64(frame.index),
                                    cams_info=np.array(cams_json))
        self.frames[ts] = {"timestamp": ts, "frame_idx": int(frame.index), "cams_info": cams_info,
                           "path": {"pcd": self._rel(ts, "pcd"), "sam4d_label": label_rel},
                           "lidar2world": l2w.copy(), "num_points": int(pts.shape[0])}
        return ts

    def close(self) -> Path:
        """Write ``meta_infos/<seq>.pkl`` (frames sorted by time) atomically."""
        if self._closed:
            return self.meta_path
        if not self.frames:
            raise DataError(f"sequence {self.seq}: no frames written")
        frames = [self.frames[k] for k in sorted(self.frames)]
        meta = {"seq_name": self.seq, "format_version": 1, "frames": frames}
        if self.point_fields:
            meta["point_fields"] = list(self.point_fields)
        meta.update(self.extra_meta)
        import pickle

        atomic_write_bytes(self.meta_path, pickle.dumps(meta, protocol=4))
        self._closed = True
        return self.meta_path

    def __enter__(self) -> "SequenceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()  # on error: no meta pickle, the frames already written stay (resumable)


def write_sequence(root: str | Path, seq_name: str, frames: Iterable[Tuple[Frame, Optional[FrameLabels]]],
                   image_format: str = "jpg", overwrite: bool = False, progress: bool = False,
                   total: Optional[int] = None, **kwargs) -> Path:
    """Write an iterable of ``(Frame, FrameLabels or None)`` as one sequence; returns the meta pickle path."""
    it: Iterable = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, total=total, desc=f"write {seq_name}", unit="frame", dynamic_ncols=True)
    with SequenceWriter(root, seq_name, image_format=image_format, overwrite=overwrite, **kwargs) as w:
        for item in it:
            frame, labels = item if isinstance(item, tuple) else (item, None)
            w.add(frame, labels)
    return w.meta_path


# ---------------------------------------------------------------------------------------------------------- reader
class Sequence:
    """One sequence of the layout: ``len(seq)``, ``seq.frame(i)``, ``seq.labels(i)``, iteration."""

    def __init__(self, root: str | Path, seq_name: str, prefer_lossless: bool = True,
                 class_names: Optional[Seq[str]] = None):
        self.root = Path(root)
        self.seq_name = seq_name
        self.prefer_lossless = prefer_lossless
        self.meta_path = self.root / "meta_infos" / f"{seq_name}.pkl"
        if not self.meta_path.exists():
            raise DataError(f"{self.meta_path}: sequence meta file is missing (incomplete or unknown sequence)")
        meta = safe_pickle_load(self.meta_path)
        self.meta = self._validate(meta)
        self.frames_info: List[dict] = self.meta["frames"]
        if class_names is None:
            class_names = self.meta.get("class_names") or (self.meta.get("synth") or {}).get("class_names")
        if class_names is None:
            from .synth import CLASS_NAMES as class_names
        self.class_ids: Dict[str, int] = {str(n): i for i, n in enumerate(class_names)}

    def _validate(self, meta: Any) -> dict:
        w = str(self.meta_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
            raise DataError(f"{w}: expected a dict with a 'frames' list")
        if not meta["frames"]:
            raise DataError(f"{w}: sequence has no frames")
        for i, f in enumerate(meta["frames"]):
            where = f"{w}: frame {i}"
            if not isinstance(f, dict):
                raise DataError(f"{where}: not a dict")
            path = f.get("path")
            if not isinstance(path, dict) or not isinstance(path.get("pcd"), str):
                raise DataError(f"{where}: missing path.pcd")
            f["lidar2world"] = check_pose(f.get("lidar2world", np.eye(4)), f"{where}: lidar2world")
            cams = f.get("cams_info", {})
            if not isinstance(cams, dict):
                raise DataError(f"{where}: cams_info must be a dict")
            for c, ci in cams.items():
                if not isinstance(ci, dict) or not isinstance(ci.get("data_path"), str):
                    raise DataError(f"{where}: camera {c}: missing data_path")
                ci["camera_intrinsics"] = check_matrix(ci.get("camera_intrinsics"), (3, 3),
                                                       f"{where}: camera {c}: camera_intrinsics")
                ci["camera2lidar"] = check_pose(ci.get("camera2lidar"), f"{where}: camera {c}: camera2lidar")
        return meta

    def __len__(self) -> int:
        return len(self.frames_info)

    @property
    def camera_names(self) -> List[str]:
        """Cameras of the first frame, in file order."""
        return list(self.frames_info[0].get("cams_info", {}).keys())

    @property
    def point_fields(self) -> Tuple[str, ...]:
        """Names of the point columns (from the meta file, else x, y, z, intensity, c4...)."""
        pf = self.meta.get("point_fields")
        return tuple(pf) if pf else ()

    def timestamp_us(self, i: int) -> int:
        """Timestamp of frame ``i`` in microseconds (from the meta, else the file name)."""
        f = self.frames_info[i]
        if "timestamp" in f:
            return int(f["timestamp"])
        try:
            return int(Path(f["path"]["pcd"]).stem)
        except ValueError:
            return i * 100_000

    @property
    def timestamps(self) -> np.ndarray:
        """Frame timestamps in seconds (float64)."""
        return np.array([self.timestamp_us(i) / 1e6 for i in range(len(self))])

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for sequence {self.seq_name} ({len(self)} frames)")
        return i % len(self)

    def points(self, i: int) -> np.ndarray:
        """Points of frame ``i`` (N x C float32)."""
        i = self._check_index(i)
        p = safe_join(self.root, self.frames_info[i]["path"]["pcd"], f"{self.seq_name} frame {i}: pcd")
        return read_points(p)[0]

    def frame(self, i: int, cameras: Optional[Seq[str]] = None) -> Frame:
        """Frame ``i`` (points, camera images with calibration, pose, timestamp)."""
        i = self._check_index(i)
        info = self.frames_info[i]
        what = f"{self.seq_name} frame {i}"
        pts = self.points(i)
        cams = []
        for name, ci in info.get("cams_info", {}).items():
            if cameras is not None and name not in cameras:
                continue
            img = read_image(_image_path(self.root, ci["data_path"], self.prefer_lossless, f"{what}: {name}"))
            cams.append(CameraFrame(name, img, ci["camera_intrinsics"].copy(), ci["camera2lidar"].copy()))
        if cameras is not None:
            missing = set(cameras) - {c.name for c in cams}
            if missing:
                raise DataError(f"{what}: cameras {sorted(missing)} not in this frame")
        return Frame(points=pts, cameras=cams, lidar2world=info["lidar2world"].copy(),
                     timestamp=self.timestamp_us(i) / 1e6, index=int(info.get("frame_idx", i)))

    def labels(self, i: int, num_points: Optional[int] = None,
               image_shapes: Optional[Dict[str, Tuple[int, int]]] = None) -> Optional[FrameLabels]:
        """Labels of frame ``i`` (``None`` if the frame has no label file)."""
        i = self._check_index(i)
        info = self.frames_info[i]
        rel = info["path"].get("sam4d_label")
        if not rel:
            return None
        p = safe_join(self.root, rel, f"{self.seq_name} frame {i}: sam4d_label")
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise DataError(f"{p}: label file is missing") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: corrupt label file: {e}") from None
        if num_points is None:
            num_points = int(info["num_points"]) if "num_points" in info else self.points(i).shape[0]
        if image_shapes is None:
            image_shapes = {}
            for c, ci in info.get("cams_info", {}).items():
                if "height" in ci and "width" in ci:
                    image_shapes[c] = (int(ci["height"]), int(ci["width"]))
                else:
                    img = read_image(_image_path(self.root, ci["data_path"], self.prefer_lossless, str(p)))
                    image_shapes[c] = img.shape[:2]
        return labels_from_json(d, num_points, image_shapes, self.class_ids, what=str(p))

    def __iter__(self) -> Iterator[Tuple[Frame, Optional[FrameLabels]]]:
        for i in range(len(self)):
            f = self.frame(i)
            yield f, self.labels(i, f.num_points, {c.name: c.image.shape[:2] for c in f.cameras})


def read_sequence(root: str | Path, seq: str, **kwargs) -> Sequence:
    """Open sequence ``seq`` under layout root ``root`` (see :class:`Sequence`)."""
    return Sequence(root, seq, **kwargs)


def list_sequences(root: str | Path) -> List[str]:
    """Names of the complete sequences (those with a meta pickle) under ``root``."""
    d = Path(root) / "meta_infos"
    return sorted(p.stem for p in d.glob("*.pkl")) if d.is_dir() else []


class InMemorySequence:
    """A list of ``(Frame, FrameLabels)`` with the :class:`Sequence` interface (e.g. from ``generate_drive``)."""

    def __init__(self, frames: Iterable[Tuple[Frame, Optional[FrameLabels]]], seq_name: str = "memory"):
        self.items = list(frames)
        self.seq_name = seq_name

    def __len__(self) -> int:
        return len(self.items)

    def frame(self, i: int, cameras: Optional[Seq[str]] = None) -> Frame:
        f = self.items[i][0]
        if cameras is None:
            return f
        return Frame(f.points, [c for c in f.cameras if c.name in cameras], f.lidar2world, f.timestamp, f.index)

    def labels(self, i: int, *args, **kwargs) -> Optional[FrameLabels]:
        return self.items[i][1]

    @property
    def camera_names(self) -> List[str]:
        return [c.name for c in self.items[0][0].cameras]


# ---------------------------------------------------------------------------------------------------------- dataset
def _torch_dataset_base():
    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover - torch is a dependency, but keep the readers usable without it
        return object
    return Dataset


class ClipDataset(_torch_dataset_base()):
    """Clips of ``clip_len`` consecutive frames (one or more cameras) for training and evaluation.

    Args:
        root: layout root, or a list of :class:`Sequence` / :class:`InMemorySequence` objects.
        clip_len: frames per clip. cameras: camera names to load (default: all cameras of each sequence).
        seqs: sequence names under ``root`` (default: all complete sequences). stride: frames between clip starts.
        frame_step: step between frames inside a clip. with_labels: load labels. transform: applied to each sample.

    Each sample is a dict: ``seq_name``, ``frame_indices`` (T,), ``timestamps`` (T,) float64, ``camera_names``,
    ``points`` (list of T float32 tensors N_t x C), ``lidar2world`` (T, 4, 4) float64, ``images`` (T, K, 3, H, W)
    uint8, ``intrinsics`` (T, K, 3, 3), ``camera2lidar`` (T, K, 4, 4), and with labels ``point_instance`` /
    ``point_class`` (lists of int64 tensors), ``image_instance`` / ``image_class`` (T, K, H, W) int64 and
    ``object_classes`` (dict id -> name, union over the clip). Use :func:`collate_clips` as ``collate_fn``.
    """

    def __init__(self, root: Any, clip_len: int = 4, cameras: Optional[Seq[str]] = None,
                 seqs: Optional[Seq[str]] = None, stride: int = 1, frame_step: int = 1, with_labels: bool = True,
                 transform: Optional[Callable[[dict], dict]] = None, prefer_lossless: bool = True):
        if clip_len < 1 or stride < 1 or frame_step < 1:
            raise ValueError("clip_len, stride and frame_step must be >= 1")
        if isinstance(root, (str, Path)):
            names = list(seqs) if seqs is not None else list_sequences(root)
            if not names:
                raise DataError(f"{root}: no sequences found (meta_infos/*.pkl)")
            self.sequences = [Sequence(root, s, prefer_lossless=prefer_lossless) for s in names]
        else:
            self.sequences = list(root)
        self.clip_len, self.cameras, self.stride, self.frame_step = clip_len, cameras, stride, frame_step
        self.with_labels, self.transform = with_labels, transform
        span = (clip_len - 1) * frame_step + 1
        self.index = [(si, st) for si, s in enumerate(self.sequences) for st in range(0, len(s) - span + 1, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        import torch

        si, st = self.index[k]
        seq = self.sequences[si]
        idxs = [st + j * self.frame_step for j in range(self.clip_len)]
        frames = [seq.frame(i, self.cameras) for i in idxs]
        cams = [c.name for c in frames[0].cameras] if self.cameras is None else list(self.cameras)
        for f in frames:
            if [c.name for c in f.cameras] != cams and self.cameras is None:
                raise DataError(f"{seq.seq_name}: camera set changes inside a clip")
        by_name = [{c.name: c for c in f.cameras} for f in frames]
        out = {
            "seq_name": seq.seq_name, "frame_indices": torch.tensor(idxs), "camera_names": cams,
            "timestamps": torch.tensor([f.timestamp for f in frames], dtype=torch.float64),
            "points": [torch.from_numpy(np.ascontiguousarray(f.points)) for f in frames],
            "lidar2world": torch.from_numpy(np.stack([f.lidar2world for f in frames])),
            "images": torch.from_numpy(np.stack([np.stack([b[c].image.transpose(2, 0, 1) for c in cams])
                                                 for b in by_name])),
            "intrinsics": torch.from_numpy(np.stack([np.stack([b[c].intrinsics for c in cams]) for b in by_name])),
            "camera2lidar": torch.from_numpy(np.stack([np.stack([b[c].camera2lidar for c in cams])
                                                       for b in by_name])),
        }
        if self.with_labels:
            labs = []
            for i, f in zip(idxs, frames):
                lab = seq.labels(i, f.num_points, {c.name: c.image.shape[:2] for c in f.cameras}) \
                    if isinstance(seq, Sequence) else seq.labels(i)
                if lab is None:
                    raise DataError(f"{seq.seq_name} frame {i}: no labels (use with_labels=False)")
                labs.append(lab)

            def img_stack(attr):
                return torch.from_numpy(np.stack([np.stack([np.asarray(getattr(lab, attr)[c], dtype=np.int64)
                                                            for c in cams]) for lab in labs]))
            out["point_instance"] = [torch.from_numpy(np.asarray(lab.point_instance, dtype=np.int64)) for lab in labs]
            out["point_class"] = [torch.from_numpy(np.asarray(
                lab.point_class if lab.point_class is not None else np.zeros_like(lab.point_instance),
                dtype=np.int64)) for lab in labs]
            out["image_instance"] = img_stack("image_instance")
            if all(lab.image_class for lab in labs):
                out["image_class"] = img_stack("image_class")
            oc: Dict[int, str] = {}
            for lab in labs:
                oc.update(lab.object_classes or {})
            out["object_classes"] = oc
        return self.transform(out) if self.transform else out


def collate_clips(batch: List[dict]) -> List[dict]:
    """``collate_fn`` for :class:`ClipDataset`: clips have different point counts, so keep a list."""
    return list(batch)
