# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Model configuration: plain dataclasses, loaded from the YAML files in ``sam4d_model/configs``.

``load_config('sam4d_tiny')`` / ``load_config('sam4d_small')`` / ``load_config('path/to/file.yaml')`` return a
:class:`SAM4DConfig`. Configs are data: every variant of the network is the same code with other numbers.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ImageEncoderConfig:
    """Hiera trunk + FPN neck (SAM2 layout) and image preprocessing."""

    image_size: int = 768
    embed_dim: int = 96
    num_heads: int = 1
    stages: List[int] = field(default_factory=lambda: [1, 2, 11, 2])
    global_att_blocks: List[int] = field(default_factory=lambda: [7, 10, 13])
    window_spec: List[int] = field(default_factory=lambda: [8, 4, 14, 7])
    window_pos_embed_bkg_spatial_size: List[int] = field(default_factory=lambda: [7, 7])
    fpn_top_down_levels: List[int] = field(default_factory=lambda: [2, 3])
    pixel_mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    backbone_stride: int = 16
    #: Resize of the camera image to ``image_size`` (aspect not kept): ``bilinear`` (antialiased, on float) or
    #: ``bicubic`` (antialiased; the official predictor's PIL bicubic resize of the uint8 image).
    resize: str = "bilinear"
    #: LayerNorm on the stride-16 image tokens. Without it the tokens grew to a mean |x| of ~85 in CPU training
    #: (against ~1 for positions and LiDAR tokens); as keys of the cross-modal memory attention they then took all
    #: the attention weight, and memories, object pointers and ego-motion compensation stopped mattering.
    token_norm: bool = True


@dataclass
class LidarEncoderConfig:
    """Sparse MinkUNet (spconv) on voxels."""

    voxel_size: float = 0.15
    num_point_features: int = 1
    #: What the ``num_point_features`` input channels are: ``columns`` = the cloud's columns after xyz (e.g.
    #: intensity; its scale differs between sensors: 0..1 synthetic and KITTI, 0..255 nuScenes);
    #: ``height_above_ground`` = one channel, the point's height above the ground estimated from the cloud
    #: itself (:func:`sam4d_model.geometric.height_above_ground`), the same on every sensor; ``constant`` = one
    #: channel equal to 1 for every point (the official model: it sees geometry only).
    point_features: str = "columns"
    #: Add the mean offset of a voxel's points from its centre (3 channels, voxel units) to its input features.
    #: The official model has none (its stem takes the one constant channel).
    voxel_offsets: bool = True
    #: Base-voxel assignment: ``grid`` = ``floor((xyz - origin) / voxel_size)`` on a grid snapped to 16 voxels,
    #: points beyond ``max_range`` dropped; ``official`` = the released model's rule: integer 0.05 m coordinates
    #: (truncated toward zero) minus their minimum, pooled to ``voxel_size`` by ``floor(c * 0.05 / voxel_size)``
    #: in float32, no range crop (only non-finite rows are dropped).
    quantisation: str = "grid"
    #: The official downsampling: the grid's extent is the cloud's own (``max + 1`` voxels per axis) and each
    #: stride-2 step a "valid" convolution of it, so voxels on the last coordinate of an odd extent have no parent
    #: (torchsparse without a spatial range; spconv does the same with this extent); the points under them get no
    #: coarser voxel and logit 0. ``false``: the extent is padded to 16 voxels and nothing is dropped.
    drop_boundary_voxels: bool = False
    #: BatchNorm epsilon of the sparse backbone (official MinkUNet: 1e-5).
    bn_eps: float = 1e-3
    #: Stage layout: ``False`` = each stride-2 convolution widens to the stage's channels and every block keeps
    #: them; ``True`` = the official MinkUNet34: the stride-2 convolution keeps the incoming channels and the
    #: stage's first block widens them (with a 1x1x1 projection on its shortcut).
    down_keeps_channels: bool = False
    encoder_channels: List[int] = field(default_factory=lambda: [32, 64, 128, 256])
    encoder_blocks: List[int] = field(default_factory=lambda: [3, 4, 6, 3])
    stem_channels: int = 32
    decoder_channels: List[int] = field(default_factory=lambda: [256, 128])
    decoder_blocks: List[int] = field(default_factory=lambda: [2, 2])
    max_range: float = 200.0
    #: LayerNorm on the stride-16 LiDAR tokens (puts them on the scale of the positional encoding).
    token_norm: bool = True


@dataclass
class UMPEConfig:
    """Unified multi-modal positional encoding (depth hypotheses along pixel rays + shared MLP)."""

    depth_min: float = 1.0
    depth_max: float = 77.8
    depth_step: float = 0.6
    fourier_scale: float = 1.0
    fourier_coord_scale: float = 0.1
    #: 2D sine encoding of image tokens and image clicks: ``sam2`` (SAM2's: frequencies ``10000^(2k/d)``, token
    #: ``i`` at ``(i + 1) / n``) or ``official`` (the released model's: its frequency formula makes every frequency
    #: equal to 1, a quirk matched here on purpose; tokens at ``(i + 0.5) / n``; clicks at ``floor(uv) + 0.5``).
    sine_2d: str = "sam2"
    #: LayerNorm on the shared 3D MLP's output (the official code's ``add_layernorm`` option): the MLP sees raw
    #: metres, so without it the 3D term is ~10x the norm of the features and drowns them in attention.
    mlp_layernorm: bool = True


@dataclass
class MemoryConfig:
    """Multi-modal cross-attention memory (MCMA) and memory encoders."""

    num_maskmem: int = 7
    max_obj_ptrs: int = 8
    num_layers: int = 4
    num_heads: int = 1
    dim_feedforward: int = 2048
    dropout: float = 0.1
    mem_dim: int = 256
    use_ego_motion: bool = True
    pose_d_max: float = 1.0
    sigmoid_scale: float = 20.0
    sigmoid_bias: float = -10.0
    mask_downsampler_channels: List[int] = field(default_factory=lambda: [4, 16, 64, 256])
    fuser_layers: int = 2
    #: Kernel of the submanifold convolution that opens each LiDAR memory fuser block (on the stride-16 tokens):
    #: 0 = none (token MLP blocks), 7 = the official 7x7x7 convolution (256 -> 256, no bias).
    lidar_fuser_kernel: int = 0
    #: LayerNorm epsilon of the LiDAR memory encoder (mask downsampler and fuser; official: 1e-6).
    lidar_norm_eps: float = 1e-5
    #: LiDAR memory tokens stored per frame: 1 = every stride-16 token (the paper); 2 = the mean of each 2x2x2 cell
    #: of them (stride 32: ~4x fewer memory tokens for memory attention to attend over; an approximation).
    lidar_pool: int = 1
    #: Which stored memories a frame attends to. ``recent``: every kept prompted frame, and the ``num_maskmem - 1``
    #: most recent other frames of any age; object pointers from those (prompted first, at most ``max_obj_ptrs``).
    #: ``distance`` (the official SAM2/SAM4D rule): prompted frames (within ``cond_frame_window``) and the frames
    #: exactly 1 .. ``num_maskmem - 1`` steps back (a missing one leaves a gap); object pointers from the prompted
    #: frames in the past and the frames 1 .. ``max_obj_ptrs - 1`` steps back.
    memory_selection: str = "recent"
    #: With ``distance``, object pointers' temporal positions are normalised by ``min(num_frames, max_obj_ptrs) - 1``
    #: when the clip length is known (the predictor), as the official model; else (and with ``recent``) by
    #: ``max_obj_ptrs - 1``.
    #: Prompted frames are attended to only while at most this many frames away (0: always; official: 8).
    cond_frame_window: int = 0
    #: On a frame where an object has no memory yet, its tokens attend to the other modality's current tokens
    #: (``true``), or are only offset by the no-memory embedding (``false``: the official model's
    #: ``directly_add_no_mem_embed``).
    attend_on_first_frame: bool = True


@dataclass
class DecoderConfig:
    """Shared two-way transformer mask decoder and prompt encoders."""

    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_max_pt_num: int = 1
    #: LiDAR voxel-to-point interpolation of the stride-4 mask logits: ``trilinear`` (8 neighbouring voxels, as the
    #: paper's sparse decoder), ``nearest`` (the point's own voxel) or ``official`` (the released code's rule, see
    #: :meth:`~sam4d_model.geometry.VoxelPyramid.official_interp`: mostly the own voxel).
    point_interp: str = "trilinear"
    #: Norm of the LiDAR mask-prompt downsampler and of the LiDAR mask head: ``layer`` or ``batch`` (official).
    lidar_norm: str = "layer"
    #: Activation of the LiDAR mask-prompt downsampler: ``gelu`` or ``relu`` (official).
    lidar_prompt_act: str = "gelu"
    #: Activations of the LiDAR mask head after each upsampling: ``gelu`` or ``identity`` (official: its
    #: LeakyReLU has slope 1).
    lidar_head_act: str = "gelu"
    #: A mask prompt is used as the output itself (logits +-10 from the mask) instead of being decoded, as the
    #: official model's ``use_mask_input_as_output_without_sam``: the object pointer and scores then come from the
    #: decoder run on the mask downsampled by ``mask_downsample_img`` / ``mask_downsample_pts`` (a 4x4 conv and
    #: a kernel-4 stride-4 sparse conv), modules that exist only with this option.
    mask_input_as_output: bool = False
    #: Sparse prompt tokens of the decoders. ``single``: each decoder gets the image and LiDAR prompt tokens once,
    #: an empty modality one padding token, a click prompt one padding token, a box none. ``official``: the image
    #: decoder gets ``[image, LiDAR, image]`` (image tokens twice), the LiDAR decoder ``[LiDAR, image]``; every
    #: prompt gets a padding token, an empty modality two.
    prompt_tokens: str = "single"
    #: Object pointer of a single-mask output: from the ``selected`` mask token (after the stability fallback) or
    #: always from the ``first`` (single-mask) token, as the official model.
    single_mask_pointer: str = "selected"
    #: Clicks counted against ``multimask_max_pt_num``: ``all`` (both modalities) or ``first_modality`` (the image
    #: clicks when there are any, else the LiDAR clicks; the official rule reads its first prompt modality).
    multimask_clicks: str = "all"
    #: Image mask logits to the camera's resolution: ``direct`` (one bilinear resize from the decoder's 4x-token
    #: grid) or ``via_input`` (bilinear to the model input size first, then to the camera's: the official
    #: predictor's two steps).
    image_mask_upsampling: str = "direct"
    #: When clicks are added to a frame that already has a prediction of the object
    #: (:meth:`~sam4d_model.predictor.SAM4DPredictor.add_prompts`), that prediction's low-res logits (clamped to
    #: +-32) are a dense mask prompt beside all the clicks (SAM2's and the official corrections), instead of the
    #: clicks alone.
    reprompt_with_logits: bool = False


@dataclass
class SAM4DConfig:
    """Whole-model configuration."""

    name: str = "sam4d_small"
    d_model: int = 256
    #: ``False``: a LiDAR-only model. Cameras are not encoded (the image encoder's weights exist but are unused),
    #: the tracker carries image clicks to the LiDAR point under them and draws image masks from the LiDAR masks
    #: (``image_from_lidar``), and training prompts and supervises the LiDAR only. For CPU-trained models whose
    #: image branch does not transfer to real images (``sam4d_tiny_lidar``); the paper's model uses both.
    use_cameras: bool = True
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    lidar: LidarEncoderConfig = field(default_factory=LidarEncoderConfig)
    umpe: UMPEConfig = field(default_factory=UMPEConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def num_depth_bins(self) -> int:
        """Number of depth hypotheses of the UMPE (128 for the paper's 1..77.8 m, step 0.6 m)."""
        u = self.umpe
        return int(len(_arange(u.depth_min, u.depth_max, u.depth_step)))

    def validate(self) -> "SAM4DConfig":
        """Check the invariants the code relies on; returns ``self``."""
        if self.memory.lidar_pool not in (1, 2):
            raise ValueError(f"memory.lidar_pool must be 1 or 2, got {self.memory.lidar_pool}")
        if self.memory.mem_dim != self.d_model:
            raise ValueError(f"memory.mem_dim ({self.memory.mem_dim}) must equal d_model ({self.d_model})")
        if self.d_model % 8 != 0:
            raise ValueError("d_model must be a multiple of 8")
        if len(self.lidar.encoder_channels) != 4 or len(self.lidar.decoder_channels) != 2:
            raise ValueError("lidar encoder: 4 encoder stages (stride 2..16) and 2 decoder stages (stride 8, 4)")
        if self.image.image_size % 32 != 0:
            raise ValueError("image.image_size must be a multiple of 32")
        choices = {("image", "resize"): ("bilinear", "bicubic"),
                   ("lidar", "point_features"): ("columns", "height_above_ground", "constant"),
                   ("lidar", "quantisation"): ("grid", "official"),
                   ("umpe", "sine_2d"): ("sam2", "official"),
                   ("decoder", "point_interp"): ("trilinear", "nearest", "official"),
                   ("decoder", "lidar_norm"): ("layer", "batch"),
                   ("decoder", "lidar_prompt_act"): ("gelu", "relu"),
                   ("decoder", "lidar_head_act"): ("gelu", "identity"),
                   ("decoder", "prompt_tokens"): ("single", "official"),
                   ("decoder", "single_mask_pointer"): ("selected", "first"),
                   ("decoder", "multimask_clicks"): ("all", "first_modality"),
                   ("decoder", "image_mask_upsampling"): ("direct", "via_input"),
                   ("memory", "memory_selection"): ("recent", "distance")}
        for (section, key), allowed in choices.items():
            value = getattr(getattr(self, section), key)
            if value not in allowed:
                raise ValueError(f"{section}.{key} must be one of {list(allowed)}, got {value!r}")
        if self.lidar.point_features in ("height_above_ground", "constant") and self.lidar.num_point_features != 1:
            raise ValueError(f"lidar.point_features {self.lidar.point_features!r} is one channel: "
                             "num_point_features must be 1")
        if self.memory.lidar_fuser_kernel not in (0, 3, 5, 7):
            raise ValueError(f"memory.lidar_fuser_kernel must be 0, 3, 5 or 7, got {self.memory.lidar_fuser_kernel}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)


def _arange(start: float, stop: float, step: float):
    import numpy as np

    return np.arange(start, stop, step)


_SECTIONS = {
    "image": ImageEncoderConfig,
    "lidar": LidarEncoderConfig,
    "umpe": UMPEConfig,
    "memory": MemoryConfig,
    "decoder": DecoderConfig,
}


def config_from_dict(d: Dict[str, Any]) -> SAM4DConfig:
    """Build a :class:`SAM4DConfig` from a nested dict; unknown keys raise ``ValueError``."""
    d = copy.deepcopy(dict(d))
    kwargs: Dict[str, Any] = {}
    top_fields = {f.name for f in dataclasses.fields(SAM4DConfig)}
    for key, value in d.items():
        if key not in top_fields:
            raise ValueError(f"unknown config key '{key}'")
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            names = {f.name for f in dataclasses.fields(cls)}
            bad = set(value or {}) - names
            if bad:
                raise ValueError(f"unknown keys in config section '{key}': {sorted(bad)}")
            kwargs[key] = cls(**(value or {}))
        else:
            kwargs[key] = value
    return SAM4DConfig(**kwargs).validate()


def load_config(name_or_path: Union[str, Path, Dict[str, Any], SAM4DConfig]) -> SAM4DConfig:
    """Load a config by name (``'sam4d_tiny'``, ``'sam4d_small'``), YAML path, dict or config object."""
    if isinstance(name_or_path, SAM4DConfig):
        return copy.deepcopy(name_or_path).validate()
    if isinstance(name_or_path, dict):
        return config_from_dict(name_or_path)
    p = Path(name_or_path)
    if not p.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        known = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config '{name_or_path}' (known names: {known})")
    with open(p, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    data.setdefault("name", p.stem)
    base = data.pop("base", None)
    if base is not None:  # ``base: <name>``: that config with this file's keys merged over it, section by section
        merged = load_config(base).to_dict()
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        data = merged
    return config_from_dict(data)
