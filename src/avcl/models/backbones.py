"""3D-CNN encoders: ``c3d``, ``r3d``, ``r21d`` (METHOD.md section 2), all ending in global pooling.

Feature names follow the paper's Table 2: ``conv3``, ``conv4``, ``conv5`` are the feature maps of
stages 3-5 (``(B, C, T', H', W')``) and ``pool`` is the global average of ``conv5`` (``(B, out_dim)``).

``r3d`` and ``r21d`` use torchvision's module names (``stem``, ``layer1`` .. ``layer4``, blocks with
``conv1``/``conv2``/``downsample``), so at width 1 their state dicts load into
``torchvision.models.video.VideoResNet`` (after dropping its ``fc``). ``r3d`` matches torchvision's
``BasicStem``/``Conv3DSimple`` layout exactly. ``r21d`` follows METHOD.md: *every* t x d x d conv,
the stem's 3x7x7 included, becomes 1 x d x d then t x 1 x 1 with the intermediate width that keeps
that conv's parameter count (14.37 M parameters at depth 9, as R3D). torchvision's ``r2plus1d_18``
differs in two places, which is why it has fewer parameters (12.49 M at depth 9): its stem has a fixed
intermediate width of 45, and each block's second conv reuses the intermediate width of the first.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from avcl.config import BACKBONES, C3D_AUDIO_MODES, DEPTHS, ModelConfig
from avcl.errors import UserError

FEATURE_LAYERS = ("conv3", "conv4", "conv5", "pool")
BASE_WIDTHS = (64, 128, 256, 512)  # stages 2-5 of R3D/R(2+1)D; C3D's conv1..conv5 use 64,128,256,512,512


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _split_width(c_in: int, c_out: int, t: int, d: int) -> int:
    """Intermediate channels of a (2+1)D conv with the parameters of a full t x d x d conv.

    t*d*d*c_in*c_out = d*d*c_in*m + t*m*c_out  =>  m = t*d*d*c_in*c_out / (d*d*c_in + t*c_out).
    """
    return (t * d * d * c_in * c_out) // (d * d * c_in + t * c_out)


def _conv(kind: str, c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Module:
    """A t x d x d convolution without bias (BN follows): full 3D for r3d, (2+1)D for r21d.

    The (2+1)D form is ``Sequential(conv 1xdxd, BN, ReLU, conv tx1x1)``, torchvision's ``Conv2Plus1D``.
    """
    t, d, _ = kernel
    padding = (t // 2, d // 2, d // 2)
    if kind == "r3d":
        return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
    mid = _split_width(c_in, c_out, t, d)
    return nn.Sequential(
        nn.Conv3d(
            c_in, mid, (1, d, d), stride=(1, stride[1], stride[2]), padding=(0, padding[1], padding[2]), bias=False
        ),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, c_out, (t, 1, 1), stride=(stride[0], 1, 1), padding=(padding[0], 0, 0), bias=False),
    )


class BasicBlock(nn.Module):
    """Two 3x3x3 convs with an identity (or 1x1x1 conv + BN) shortcut; torchvision's attribute names."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Sequential(
            _conv(kind, c_in, c_out, (3, 3, 3), stride), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(_conv(kind, c_out, c_out, (3, 3, 3), (1, 1, 1)), nn.BatchNorm3d(c_out))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if c_in != c_out or stride != (1, 1, 1):
            self.downsample = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm3d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class Backbone(nn.Module):
    """A 3D CNN mapping a clip ``(B, C, T, H, W)`` to a feature vector ``(B, out_dim)``.

    Subclasses register their stages as plain attributes (so state-dict keys stay torchvision's) and
    list the attribute names, in order, in ``_stage_names``.
    """

    out_dim: int
    layer_dims: dict[str, int]
    _stage_names: tuple[str, ...]  # attribute names, in order
    _stage_of: dict[str, str]  # feature name -> the attribute whose output it is

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, out_dim)``: global average pool of ``conv5``."""
        return self.forward_features(x, ("pool",))["pool"]

    def forward_features(self, x: Tensor, layers: Sequence[str] = ("pool",)) -> dict[str, Tensor]:
        """Feature maps ``conv3``/``conv4``/``conv5`` ``(B, C, T', H', W')`` and ``pool`` ``(B, out_dim)``.

        Runs the network only as deep as the deepest layer asked for.
        """
        unknown = [name for name in layers if name not in FEATURE_LAYERS]
        if unknown or not layers:
            raise ValueError(f"feature layers {list(layers)}: ask for one or more of {', '.join(FEATURE_LAYERS)}")
        maps = {"conv5" if name == "pool" else name for name in layers}
        feature_at = {stage: name for name, stage in self._stage_of.items()}
        last = max(self._stage_names.index(self._stage_of[name]) for name in maps)
        out: dict[str, Tensor] = {}
        for stage in self._stage_names[: last + 1]:
            x = getattr(self, stage)(x)
            if feature_at.get(stage) in layers:
                out[feature_at[stage]] = x
        if "pool" in layers:
            out["pool"] = x.mean(dim=(2, 3, 4))
        return out

    def stage(self, name: str) -> nn.Module:
        """The module whose output is the feature map ``name`` (``conv3``, ``conv4``, ``conv5``)."""
        if name not in self._stage_of or name == "pool":
            raise ValueError(
                f"no feature map '{name}'; choose one of {', '.join(n for n in self._stage_of if n != 'pool')}"
            )
        return getattr(self, self._stage_of[name])

    def _init_weights(self) -> None:
        # torchvision's VideoResNet initialisation, for every backbone
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class ResNet3d(Backbone):
    """R3D / R(2+1)D: stem (3,7,7) stride (1,2,2) without max-pool, then four stages of basic blocks.

    Stages 3-5 stride 2 in T, H and W (stride 1 in T when ``temporal_pool`` is False).
    """

    def __init__(
        self, kind: str, in_channels: int = 3, blocks: int = 1, width: float = 1.0, temporal_pool: bool = True
    ):
        super().__init__()
        widths = [_scaled(c, width) for c in BASE_WIDTHS]
        stem_conv = _conv(kind, in_channels, widths[0], (3, 7, 7), (1, 2, 2))
        stem_parts = list(stem_conv) if isinstance(stem_conv, nn.Sequential) else [stem_conv]
        # flattened as torchvision's BasicStem / R2Plus1dStem: conv, BN, ReLU (, conv, BN, ReLU)
        self.stem = nn.Sequential(*stem_parts, nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
        c_in = widths[0]
        for i, c_out in enumerate(widths):
            s = 1 if i == 0 else 2
            stride = (s if temporal_pool else 1, s, s)
            stage = [BasicBlock(kind, c_in, c_out, stride)] + [
                BasicBlock(kind, c_out, c_out, (1, 1, 1)) for _ in range(blocks - 1)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            c_in = c_out
        self._stage_names = ("stem", "layer1", "layer2", "layer3", "layer4")
        self._stage_of = {"conv3": "layer2", "conv4": "layer3", "conv5": "layer4"}
        self.layer_dims = {"conv3": widths[1], "conv4": widths[2], "conv5": widths[3], "pool": widths[3]}
        self.out_dim = widths[3]
        self._init_weights()


def _c3d_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class C3D(Backbone):
    """C3D as in VCOP: 8 convs 3x3x3 + BN + ReLU, pool1 (1,2,2), pool2-4 (2,2,2), no FC layers.

    ``temporal_pool=False`` makes pool2-4 (1,2,2), for a spectrogram fed as a clip with T=1.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, temporal_pool: bool = True):
        super().__init__()
        c1, c2, c3, c4 = (_scaled(c, width) for c in BASE_WIDTHS)
        t = 2 if temporal_pool else 1
        self.conv1 = _c3d_conv(in_channels, c1)
        self.pool1 = nn.MaxPool3d((1, 2, 2))
        self.conv2 = _c3d_conv(c1, c2)
        self.pool2 = nn.MaxPool3d((t, 2, 2))
        self.conv3 = nn.Sequential(_c3d_conv(c2, c3), _c3d_conv(c3, c3))
        self.pool3 = nn.MaxPool3d((t, 2, 2))
        self.conv4 = nn.Sequential(_c3d_conv(c3, c4), _c3d_conv(c4, c4))
        self.pool4 = nn.MaxPool3d((t, 2, 2))
        self.conv5 = nn.Sequential(_c3d_conv(c4, c4), _c3d_conv(c4, c4))
        self._stage_names = ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "conv4", "pool4", "conv5")
        self._stage_of = {"conv3": "conv3", "conv4": "conv4", "conv5": "conv5"}
        self.layer_dims = {"conv3": c3, "conv4": c4, "conv5": c4, "pool": c4}
        self.out_dim = c4
        self.min_frames = 8 if temporal_pool else 1  # three (2,2,2) poolings
        self._init_weights()

    def forward_features(self, x: Tensor, layers: Sequence[str] = ("pool",)) -> dict[str, Tensor]:
        if x.shape[2] < self.min_frames:
            raise UserError(
                f"c3d pools time three times and needs clips of at least {self.min_frames} frames, "
                f"got {x.shape[2]}: raise data.clip_len or use r3d/r21d"
            )
        return super().forward_features(x, layers)


def build_backbone(
    name: str, in_channels: int = 3, depth: int = 9, width: float = 1.0, temporal_pool: bool = True
) -> Backbone:
    """``c3d`` | ``r3d`` | ``r21d``; depth 9 = one residual block per stage (the paper), 18 = two."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")
    if width <= 0:
        raise UserError(f"backbone width must be positive, got {width}")
    if name == "c3d":
        if depth != 9:
            raise UserError(f"c3d has a fixed layout (8 convs); depth {depth} applies to r3d and r21d only")
        return C3D(in_channels, width, temporal_pool)
    if depth not in DEPTHS:
        raise UserError(f"backbone depth must be one of {', '.join(map(str, DEPTHS))}, got {depth}")
    return ResNet3d(name, in_channels, blocks=1 if depth == 9 else 2, width=width, temporal_pool=temporal_pool)


class AudioEncoder(nn.Module):
    """Runs a video backbone on a log-mel spectrogram ``(B, 1, F, Ta)`` seen as a clip.

    ``mode``:
      - ``"single"``: the backbone has 1 input channel; input ``(B, 1, 1, F, Ta)`` (T=1).
      - ``"repeat"``: a shared 3-channel backbone; the spectrogram is repeated to ``(B, 3, 1, F, Ta)``.
      - ``"tile"``: C3D's temporal pooling needs T>=8, so the spectrogram is tiled to
        ``(B, C, 16, F, Ta)`` (C = the backbone's input channels).

    A spectrogram already shaped as a clip ``(B, 1, 1, F, Ta)`` is accepted too.
    """

    TILE_FRAMES = 16

    def __init__(self, backbone: Backbone, mode: str = "single", in_channels: int = 1):
        super().__init__()
        if mode not in ("single", "repeat", "tile"):
            raise ValueError(f"unknown audio encoder mode {mode!r}")
        self.backbone = backbone
        self.mode = mode
        self.in_channels = in_channels
        self.out_dim = backbone.out_dim
        self.layer_dims = backbone.layer_dims

    def stage(self, name: str) -> nn.Module:
        """The backbone module whose output is the feature map ``name`` (see ``Backbone.stage``)."""
        return self.backbone.stage(name)

    def to_clip(self, spec: Tensor) -> Tensor:
        """``(B, 1, F, Ta)`` -> ``(B, in_channels, T, F, Ta)`` with T=1 (16 when tiling)."""
        if spec.dim() == 5 and spec.shape[2] == 1:
            spec = spec.squeeze(2)
        if spec.dim() != 4 or spec.shape[1] != 1:
            raise ValueError(f"expected a spectrogram batch (B, 1, F, Ta), got shape {tuple(spec.shape)}")
        frames = self.TILE_FRAMES if self.mode == "tile" else 1
        return spec.unsqueeze(2).expand(-1, self.in_channels, frames, -1, -1)

    def forward(self, spec: Tensor) -> Tensor:
        """``(B, 1, F, Ta)`` -> ``(B, out_dim)``."""
        return self.backbone(self.to_clip(spec))

    def forward_features(self, spec: Tensor, layers: Sequence[str] = ("pool",)) -> dict[str, Tensor]:
        return self.backbone.forward_features(self.to_clip(spec), layers)


def build_encoders(model_cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(video_encoder, audio_encoder)`` from an ``avcl.config.ModelConfig``.

    Default: two independent backbones of the same type (3 and 1 input channels), as the paper.
    ``shared=True`` (paper Table 1, one model): one 3-channel backbone used by both; the audio
    encoder wraps the same module, so its parameters appear once in ``parameters()``.
    For C3D, ``c3d_audio`` says how the T=1 spectrogram meets temporal pooling: ``no_temporal_pool``
    (the audio copy does not pool time) or ``tile`` (the spectrogram is tiled to 16 frames).
    """
    name, depth, width = model_cfg.backbone, model_cfg.depth, model_cfg.width
    c3d_mode = model_cfg.c3d_audio
    if c3d_mode not in C3D_AUDIO_MODES:
        raise UserError(f"model.c3d_audio is {c3d_mode!r}; choose one of {', '.join(C3D_AUDIO_MODES)}")
    tile = name == "c3d" and c3d_mode == "tile"
    if model_cfg.shared and name == "c3d" and not tile:
        raise UserError(
            "model.shared=true with backbone c3d needs model.c3d_audio=tile: the shared C3D "
            "pools time, which a T=1 spectrogram does not have"
        )
    video = build_backbone(name, 3, depth, width)
    if model_cfg.shared:
        return video, AudioEncoder(video, "tile" if tile else "repeat", in_channels=3)
    audio = build_backbone(name, 1, depth, width, temporal_pool=not (name == "c3d" and not tile))
    return video, AudioEncoder(audio, "tile" if tile else "single", in_channels=1)
