"""Run configuration: one dataclass per concern, YAML presets, dotted overrides.

A run is described by a :class:`Config`. Presets live in ``configs/*.yaml`` and hold any subset of
the fields below; ``key=value`` overrides on the command line use dotted names
(``train.epochs=5``, ``method.lambda_cor=0.5``). A key that does not exist is an error that names
the key and the closest valid ones, so a typo never silently falls back to a default.

Where the paper is silent or ambiguous, the defaults follow ``METHOD.md`` and the README lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from avcl.errors import UserError
from avcl.fileio import atomic_write


class ConfigError(UserError, ValueError):
    """A configuration file or override that cannot be applied."""


@dataclass
class DataConfig:
    """What a training sample is made of (METHOD.md section 1)."""

    root: str = ""  # prepared cache folder written by `avcl prepare`
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    clip_len: int = 16  # consecutive frames per clip, at the source frame rate
    crop_size: int = 112  # random crop for training, centre crop for evaluation
    hflip: bool = True  # random horizontal flip of the clip during training
    video_mean: list = field(default_factory=lambda: [0.43216, 0.394666, 0.37645])
    video_std: list = field(default_factory=lambda: [0.22803, 0.22145, 0.216989])
    normalize_video: bool = True  # per-channel mean/std after scaling to [0, 1]
    audio_window: str = "whole"  # "whole" audio of the video, or a window in seconds ("1.2")
    audio_size: int = 256  # the log-mel is resized to audio_size x audio_size (paper: 256x256)
    audio_crop: int = 112  # random crop for training, centre crop for evaluation
    normalize_audio: bool = True  # with the dataset statistics computed at prepare time
    test_clips: int = 10  # uniformly spaced clips per video for video-level testing
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect on CUDA
    persistent_workers: bool = True
    prefetch_factor: int = 4
    normalize_on_device: bool = True  # ship uint8 clips, normalise on the training device
    decode_device: str = "cpu"  # cpu: loader workers decode the JPEG frames; device: batched on the training device
    stkd: bool = False  # remove each clip's temporal mean per pixel (TCGL's STKD) in to_model_input


@dataclass
class ModelConfig:
    """The two encoders (METHOD.md section 2)."""

    backbone: str = "r3d"  # c3d | r3d | r21d
    depth: int = 9  # 9 convolutions (one block per stage, the paper) or 18 (two blocks)
    width: float = 1.0  # multiplier of the base width 64 (0.25 gives 16 for CPU runs)
    shared: bool = False  # one model for both modalities (paper Table 1, "model number 1")
    c3d_audio: str = "no_temporal_pool"  # C3D on a T=1 spectrogram: no_temporal_pool | tile
    dropout: float = 0.7  # between fully-connected layers of the classifier
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA


@dataclass
class MethodConfig:
    """The self-supervised (or supervised) objective and its options."""

    name: str = "avcl"
    # AVCL (METHOD.md section 3)
    amfm: bool = True
    gate: str = "sigmoid"  # sigmoid (default) | relu (the paper's text, read literally)
    cgra: bool = True
    cgra_layer: str = "pool"  # conv3 | conv4 | conv5 | pool | conv5+pool
    cgra_lambda: float = 0.005  # off-diagonal weight of the cross-correlation loss
    standardize: bool = True  # zero-mean, unit-variance features before Eq. 6
    cgra_reduce: str = "mean"  # sum (Eq. 5 as printed, grows with D) | mean (divided by D)
    loss_on: str = "projector"  # fused (AMFM outputs, the paper) | encoder | projector: what CGRA/SelfCL compare
    selfcl: bool = True
    lambda_cor: float = 0.5  # paper: 0.9 (measured: with it CGRA's gradient dominates SelfCL's)
    lambda_self: float = 0.5  # paper: 0.1
    temperature: float = 0.5
    # projector heads: AVCL with loss_on=projector, and the comparison methods (METHOD.md section 4)
    proj_dim: int = 128
    proj_hidden: int = 512
    barlow_proj_dim: int = 2048
    moco_queue: int = 4096
    moco_momentum: float = 0.99
    byol_momentum: float = 0.99
    pred_hidden: int = 512
    iic_intra: str = "both"  # repeat | shuffle | both: how IIC breaks temporal order
    supervised_modality: str = "both"  # video | audio | both, for the supervised baselines


@dataclass
class OptimConfig:
    """SGD as the paper (section 3.2), with the usual schedules."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"  # constant | cosine | step
    warmup_epochs: int = 0
    step_epochs: list = field(default_factory=list)  # for schedule=step
    step_gamma: float = 0.1
    lr_scaling: str = "none"  # none | linear: lr * global_batch / base_batch
    base_batch: int = 16


@dataclass
class TrainConfig:
    """The engine: epochs, batch, precision, checkpoints, logging."""

    out: str = "runs/pretrain"
    epochs: int = 300
    batch_size: int = 16  # per process
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | off; bf16 and fp16 are refused off CUDA
    channels_last: bool = False  # channels_last_3d memory format on CUDA
    compile: bool = False  # torch.compile the method
    grad_clip: float = 0.0  # 0 disables
    max_steps_per_epoch: int = 0  # 0 = the whole epoch
    log_every: int = 10  # steps between log lines (means over the steps and ranks; the non-finite check)
    keep_checkpoints: int = 2  # most recent epoch checkpoints kept beside last.pt/best.pt
    tensorboard: bool = True
    progress: bool = True


@dataclass
class EvalConfig:
    """Downstream evaluation: fine-tuning, linear probe, video-level test (METHOD.md section 6)."""

    modality: str = "both"  # video | audio | both (fused features)
    epochs: int = 150
    batch_size: int = 16
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-3
    schedule: str = "constant"
    linear_lr: float = 0.1  # unused since the probe is fitted by full-batch L-BFGS; kept so saved configs load
    # probe weight decays; the one with the best validation accuracy is kept (a single value: no search)
    linear_weight_decay: list = field(default_factory=lambda: [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    linear_epochs: int = 100  # L-BFGS iterations of each probe fit (full batch)
    topk: list = field(default_factory=lambda: [1, 5])


@dataclass
class TCGLConfig:
    """TCGL (METHOD.md section 5): the VCOP tuple, the graphs and their views."""

    gap: int = 8  # frames between consecutive snippets of a tuple (3 x data.clip_len + 2 x gap frames)
    sets: int = 4  # frame sets (intra-graph nodes) per snippet; data.clip_len must be a multiple
    short_videos: str = "skip"  # videos shorter than the tuple: skip (dropped, counted) | loop (frame ids wrap)
    stkd: bool = True  # temporal-mean removal per snippet and per frame set during pretraining
    inter_edges: str = (
        "positions"  # positions (0-1, 1-2 of the shuffled order) | true_order (the release: leaks the label)
    )
    intra_gcn: str = "shared"  # shared (one GCN for the three snippets) | per_position (the release: one per position)
    edge_drop: float = 0.2  # view 2: probability of dropping each directed edge
    feature_mask: float = 0.1  # view 2: probability of masking each feature dimension (one mask per sample)
    temperature: float = 0.5  # GRACE's tau
    order_dropout: float = 0.5  # dropout of the ASOP classifier


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tcgl: TCGLConfig = field(default_factory=TCGLConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            keys.extend(_valid_keys(value, name + "."))
        else:
            keys.append(name)
    return keys


def _unknown_key(key: str, cfg: Config, source: str) -> ConfigError:
    valid = _valid_keys(cfg)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if not close:  # also try matching the last part alone: "lr" -> optim.lr, eval.lr
        leaf = key.split(".")[-1]
        close = [k for k in valid if k.split(".")[-1] == leaf][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}' in {source}{hint}")


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Convert a YAML value to the type of the field it replaces."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects true or false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}' expects a number, got {value!r}")
    if isinstance(current, str):
        return str(value)
    if isinstance(current, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]
    return value


def set_key(cfg: Config, key: str, value: Any, source: str = "overrides") -> None:
    """Set a dotted key (``train.epochs``) on ``cfg``, checking the key and the value's type."""
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            raise _unknown_key(key, cfg, source)
        if i == len(parts) - 1:
            current = getattr(node, part)
            if dataclasses.is_dataclass(current):
                raise ConfigError(f"config key '{key}' is a section; set one of its fields instead")
            setattr(node, part, _coerce(value, current, key))
        else:
            node = getattr(node, part)


def _flatten(tree: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, name + ".")
        else:
            yield name, v


def apply_dict(cfg: Config, tree: dict, source: str) -> Config:
    for key, value in _flatten(tree):
        set_key(cfg, key, value, source)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_preset(path: str | Path) -> dict:
    """The sections and keys a YAML preset sets (and only those)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    tree = yaml.safe_load(path.read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return tree


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the YAML preset at ``path``, then ``key=value`` overrides, in that order."""
    cfg = Config()
    if path is not None:
        apply_dict(cfg, read_preset(path), str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value, "command-line overrides")
    validate(cfg)
    return cfg


# Method options added after checkpoints were already being saved, with the value that reproduces how
# those earlier runs were trained (a saved config without the key predates the option).
SAVED_CONFIG_FALLBACKS = {"method": {"loss_on": "fused", "cgra_reduce": "sum"}}


def upgrade_saved(tree: dict) -> dict:
    """A saved config with the keys it predates filled in as the run was trained."""
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    for section, keys in SAVED_CONFIG_FALLBACKS.items():
        if isinstance(tree.get(section), dict):
            for key, value in keys.items():
                tree[section].setdefault(key, value)
    return tree


def config_from_dict(tree: dict) -> Config:
    """Rebuild a config saved beside a checkpoint."""
    return apply_dict(Config(), upgrade_saved(tree), "saved config")


_CHOICES = {
    "model.backbone": ("c3d", "r3d", "r21d"),
    "model.depth": (9, 18),
    "model.c3d_audio": ("no_temporal_pool", "tile"),
    "method.gate": ("sigmoid", "relu"),
    "method.cgra_layer": ("conv3", "conv4", "conv5", "pool", "conv5+pool"),
    "method.cgra_reduce": ("sum", "mean"),
    "method.loss_on": ("fused", "encoder", "projector"),
    "method.iic_intra": ("repeat", "shuffle", "both"),
    "method.supervised_modality": ("video", "audio", "both"),
    "optim.name": ("sgd", "adamw"),
    "optim.schedule": ("constant", "cosine", "step"),
    "optim.lr_scaling": ("none", "linear"),
    "train.amp": ("auto", "bf16", "fp16", "off"),
    "data.decode_device": ("cpu", "device"),
    "train.device": ("auto", "cpu", "cuda"),
    "eval.modality": ("video", "audio", "both"),
    "eval.schedule": ("constant", "cosine", "step"),
    "tcgl.short_videos": ("skip", "loop"),
    "tcgl.inter_edges": ("positions", "true_order"),
    "tcgl.intra_gcn": ("shared", "per_position"),
}


def get_key(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> None:
    for key, choices in _CHOICES.items():
        value = get_key(cfg, key)
        if value not in choices:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(map(str, choices))}")
    if cfg.train.device == "cpu" and cfg.train.amp in ("bf16", "fp16"):
        raise ConfigError(
            f"train.amp={cfg.train.amp} with train.device=cpu: mixed precision runs on CUDA only "
            "(oneDNN's reduced-precision 3D convolutions are wrong on some CPUs); "
            "use train.amp=auto or off"
        )
    if cfg.data.audio_window != "whole":
        try:
            seconds = float(cfg.data.audio_window)
        except ValueError:
            raise ConfigError(
                f"data.audio_window must be 'whole' or a number of seconds, got {cfg.data.audio_window!r}"
            )
        if seconds <= 0:
            raise ConfigError("data.audio_window must be positive")
    if cfg.data.crop_size <= 0 or cfg.data.audio_crop > cfg.data.audio_size:
        raise ConfigError("data.audio_crop must not exceed data.audio_size, and crops must be positive")
    if cfg.model.width <= 0:
        raise ConfigError("model.width must be positive")


# The method keys on which the paper-literal presets (configs/avcl_paper_*.yaml) differ from the
# defaults, with the paper's value (README, "Where this implementation interprets the paper").
PAPER_LITERAL = {
    "method.gate": "relu",
    "method.standardize": False,
    "method.loss_on": "fused",
    "method.cgra_reduce": "sum",
    "method.lambda_cor": 0.9,
    "method.lambda_self": 0.1,
}
