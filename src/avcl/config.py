"""Run configuration: one dataclass per concern, YAML presets, dotted overrides.

A run is described by a :class:`Config`. Presets live in ``configs/*.yaml`` and hold any subset of
the fields below; ``key=value`` overrides on the command line use dotted names
(``train.epochs=5``, ``method.lambda_cor=0.5``). A key that does not exist is an error that names
the key and the closest valid ones, so a typo never silently falls back to a default.

Where the paper is silent or ambiguous, the defaults follow ``METHOD.md`` and the README lists them.

The ``method`` section is composed: the keys several methods share (:class:`SharedMethodOptions`)
plus the options each method of the registry (:mod:`avcl.methods`) declares in a dataclass beside
it; a method may instead keep its options in a section of its own (TCGL's ``tcgl``). This module
imports no method at import time (that would import torch): the composition happens on the first
``Config()``. A field that takes one of a few values says so with :func:`choice`, and
:func:`validate` checks every such field, whatever its section.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from avcl.errors import UserError
from avcl.fileio import atomic_write


class ConfigError(UserError, ValueError):
    """A configuration file or override that cannot be applied."""


def choice(default: Any, choices: Iterable[Any]) -> Any:
    """A dataclass field that takes one of ``choices`` (checked by :func:`validate`)."""
    choices = tuple(choices)
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of {choices}")
    return field(default=default, metadata={"choices": choices})


# Allowed values, defined once: config validation reads them from the fields, the command line and the
# modules that implement them import them from here.
BACKBONES = ("c3d", "r3d", "r21d")  # avcl.models.backbones
DEPTHS = (9, 18)  # convolutions: one residual block per stage (the paper) or two
C3D_AUDIO_MODES = ("no_temporal_pool", "tile")
AUDIO_CROP_AXES = ("both", "time")  # data.audio_crop_axes: where the training crop of the spectrogram moves
MODALITIES = ("video", "audio", "both")  # the features a method is evaluated (or trained, supervised) on
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "step")  # of fine-tuning (eval.schedule)
PRETRAIN_SCHEDULES = SCHEDULES + ("plateau",)  # optim.schedule: plateau watches the training loss


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
    audio_crop_axes: str = choice("both", AUDIO_CROP_AXES)  # the training crop moves in mel and time, or in time only
    normalize_audio: bool = True  # with the dataset statistics computed at prepare time
    test_clips: int = 10  # uniformly spaced clips per video for video-level testing
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect on CUDA
    persistent_workers: bool = True
    prefetch_factor: int = 4
    normalize_on_device: bool = True  # ship uint8 clips, normalise on the training device
    decode_device: str = choice(
        "cpu", ("cpu", "device")
    )  # cpu: loader workers decode the JPEG frames; device: batched on the training device
    stkd: bool = False  # remove each clip's temporal mean per pixel (TCGL's STKD) in to_model_input


@dataclass
class ModelConfig:
    """The two encoders (METHOD.md section 2)."""

    backbone: str = choice("r3d", BACKBONES)
    depth: int = choice(9, DEPTHS)  # 9 convolutions (one block per stage, the paper) or 18 (two blocks)
    width: float = 1.0  # multiplier of the base width 64 (0.25 gives 16 for CPU runs)
    shared: bool = False  # one model for both modalities (paper Table 1, "model number 1")
    c3d_audio: str = choice("no_temporal_pool", C3D_AUDIO_MODES)  # C3D on a T=1 spectrogram
    dropout: float = 0.7  # between fully-connected layers of the classifier
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA


@dataclass
class SharedMethodOptions:
    """The keys of the ``method`` section that several methods read; each method's own keys are in its
    options dataclass (``avcl/methods/<method>.py``), composed into the section by :func:`method_config_class`."""

    name: str = "avcl"  # a method of the registry, avcl.methods.REGISTRY
    temperature: float = 0.5  # InfoNCE temperature (AVCL's SelfCL, SimCLR, MoCo, IIC)
    # projector and predictor heads, dropped after pretraining (METHOD.md section 4)
    proj_dim: int = 128
    proj_hidden: int = 512
    pred_hidden: int = 512
    cgra_lambda: float = 0.005  # off-diagonal weight of the cross-correlation loss (AVCL's CGRA, Barlow Twins)


@dataclass
class OptimConfig:
    """SGD as the paper (section 3.2), with the usual schedules."""

    name: str = choice("sgd", OPTIMIZERS)
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = choice("constant", PRETRAIN_SCHEDULES)
    warmup_epochs: int = 0
    step_epochs: list = field(default_factory=list)  # for schedule=step
    step_gamma: float = 0.1  # the rate's multiplier at each step epoch (step) or plateau (plateau)
    plateau_patience: int = 50  # schedule=plateau: epochs without improvement of the training loss before a cut
    lr_scaling: str = choice("none", ("none", "linear"))  # lr * global_batch / base_batch
    base_batch: int = 16


@dataclass
class TrainConfig:
    """The engine: epochs, batch, precision, checkpoints, logging."""

    out: str = "runs/pretrain"
    epochs: int = 300
    batch_size: int = 16  # per process
    seed: int = 0
    device: str = choice("auto", ("auto", "cpu", "cuda"))
    amp: str = choice(
        "auto", ("auto", "bf16", "fp16", "off")
    )  # auto: bf16 on CUDA, fp32 on CPU; bf16 and fp16 are refused off CUDA
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

    modality: str = choice("both", MODALITIES)  # both: the two encoders' features (AVCL: fused)
    epochs: int = 150
    batch_size: int = 16
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-3
    optimizer: str = choice("sgd", OPTIMIZERS)
    schedule: str = choice("constant", SCHEDULES)
    warmup_epochs: int = 0
    step_epochs: list = field(default_factory=list)  # for schedule=step
    step_gamma: float = 0.1  # the rate's multiplier at each step epoch
    linear_lr: float = 0.1  # unused since the probe is fitted by full-batch L-BFGS; kept so saved configs load
    # probe weight decays; the one with the best validation accuracy is kept (a single value: no search)
    linear_weight_decay: list = field(default_factory=lambda: [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    linear_epochs: int = 100  # L-BFGS iterations of each probe fit (full batch)
    topk: list = field(default_factory=lambda: [1, 5])


@functools.cache
def _compose(methods: tuple[str, ...]) -> tuple[type, dict[str, type], dict[str, dict[str, Any]]]:
    """The ``method`` section's dataclass for the registered ``methods``, the sections of their own, and
    the values of the options that saved configs predate, per section (each method's ``saved_fallbacks``)."""
    from avcl.methods import REGISTRY

    fields = {f.name: (f, "the shared keys") for f in dataclasses.fields(SharedMethodOptions)}
    sections: dict[str, type] = {}
    fallbacks: dict[str, dict[str, Any]] = {}
    for name in methods:
        cls = REGISTRY[name].load()
        options, section = getattr(cls, "options", None), getattr(cls, "options_section", "method")
        if options is None:
            continue
        saved = getattr(cls, "saved_fallbacks", {})
        unknown = set(saved) - {f.name for f in dataclasses.fields(options)}
        if unknown:
            raise TypeError(
                f"method {name}: saved_fallbacks names keys it does not declare: {', '.join(sorted(unknown))}"
            )
        if saved:
            fallbacks.setdefault(section, {}).update(saved)
        if section != "method":
            if section in sections or section not in {f.name for f in dataclasses.fields(Config)}:
                raise TypeError(f"method {name}: options section '{section}' is taken or not a field of Config")
            sections[section] = options
            continue
        for f in dataclasses.fields(options):
            if f.name in fields:
                raise TypeError(f"method {name}: option method.{f.name} is already declared by {fields[f.name][1]}")
            fields[f.name] = (f, f"method {name}")
    spec = []
    for f, _ in fields.values():
        kwargs: dict[str, Any] = {"metadata": f.metadata}
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        else:
            kwargs["default_factory"] = f.default_factory
        spec.append((f.name, f.type, field(**kwargs)))
    method_cls = dataclasses.make_dataclass("MethodConfig", spec)
    method_cls.__module__ = __name__  # pickled by reference as avcl.config.MethodConfig (module __getattr__)
    method_cls.__doc__ = "The ``method`` section: the shared keys and every registered method's options."
    return method_cls, sections, fallbacks


def method_config_class() -> type:
    """The dataclass of the ``method`` section, composed from the registry (imports the methods)."""
    from avcl.methods import REGISTRY

    return _compose(tuple(REGISTRY))[0]


def section_class(section: str) -> type:
    """The options dataclass a registered method keeps in a section of its own (``tcgl``)."""
    from avcl.methods import REGISTRY

    sections = _compose(tuple(REGISTRY))[1]
    if section not in sections:
        raise TypeError(f"no registered method declares the options section '{section}'")
    return sections[section]


def __getattr__(name: str) -> Any:  # the composed classes under the names they had as static classes
    if name == "MethodConfig":
        return method_config_class()
    if name == "TCGLConfig":
        return section_class("tcgl")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = field(default_factory=lambda: method_config_class()())
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # a method that keeps its options in a section of its own (``options_section``) has a field here
    tcgl: Any = field(default_factory=lambda: section_class("tcgl")())

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
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
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


def upgrade_saved(tree: dict) -> dict:
    """A saved config with the keys it predates filled in as the run was trained: the method options
    added after checkpoints were already being saved, with the values each method declares for them
    (its ``saved_fallbacks``; composed from the registry, so this imports the methods)."""
    from avcl.methods import REGISTRY

    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    for section, keys in _compose(tuple(REGISTRY))[2].items():
        if isinstance(tree.get(section), dict):
            for key, value in keys.items():
                tree[section].setdefault(key, value)
    return tree


def config_from_dict(tree: dict) -> Config:
    """Rebuild a config saved beside a checkpoint."""
    return apply_dict(Config(), upgrade_saved(tree), "saved config")


def field_choices(cfg: Any, prefix: str = "") -> Iterable[tuple[str, tuple]]:
    """``(dotted key, allowed values)`` of every field of ``cfg`` declared with :func:`choice`."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from field_choices(value, f"{prefix}{f.name}.")
        elif "choices" in f.metadata:
            yield f"{prefix}{f.name}", f.metadata["choices"]


def get_key(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> None:
    from avcl.methods import REGISTRY

    for key, allowed in [("method.name", tuple(REGISTRY)), *field_choices(cfg)]:
        value = get_key(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(map(str, allowed))}")
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
    if cfg.optim.plateau_patience < 0:
        raise ConfigError("optim.plateau_patience must be 0 or more epochs")


# The method keys on which the paper-literal presets (configs/avcl_paper_*.yaml) differ from the
# defaults, with the paper's value (README, "Where this implementation interprets the paper").
PAPER_LITERAL = {
    "method.gate": "relu",
    "method.standardize": False,
    "method.loss_on": "fused",
    "method.cgra_reduce": "sum",
}
# Eq. 11's weights as the paper gives them (the defaults too); the paper-literal row sets them explicitly,
# so that overriding the weights for a comparison leaves that row the paper's.
PAPER_WEIGHTS = {"method.lambda_cor": 0.9, "method.lambda_self": 0.1}
