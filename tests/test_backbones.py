"""Encoders: shapes, feature layers, parameter counts, torchvision compatibility, audio variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv2Plus1D, Conv3DSimple, VideoResNet

from avcl.config import ModelConfig
from avcl.errors import UserError
from avcl.models import AudioEncoder, build_backbone, build_encoders

CLIP = (2, 3, 8, 32, 32)
SPEC = (2, 1, 32, 32)
ALL = [("c3d", 9), ("r3d", 9), ("r3d", 18), ("r21d", 9), ("r21d", 18)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name,depth", ALL)
def test_feature_shapes_at_quarter_width(name, depth):
    torch.manual_seed(0)
    net = build_backbone(name, depth=depth, width=0.25)
    feats = net.forward_features(torch.randn(CLIP), ("conv3", "conv4", "conv5", "pool"))
    # 32x32 -> stride 2 at the stem (r3d/r21d) or pool1 (c3d), then 2 per stage 3-5; T 8 -> 4 -> 2 -> 1
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "conv3": (2, 64 if name == "c3d" else 32, 4, 8, 8),
        "conv4": (2, 128 if name == "c3d" else 64, 2, 4, 4),
        "conv5": (2, 128, 1, 2, 2),
        "pool": (2, 128),
    }
    assert net.out_dim == 128 and net.layer_dims == {k: v.shape[1] for k, v in feats.items()}
    torch.testing.assert_close(feats["pool"], feats["conv5"].mean(dim=(2, 3, 4)))
    net.eval()
    torch.testing.assert_close(net(torch.ones(CLIP)), net.forward_features(torch.ones(CLIP))["pool"])


def test_forward_features_stops_at_the_deepest_layer_asked():
    net = build_backbone("r3d", width=0.25)
    ran = []
    for stage in ("stem", "layer1", "layer2", "layer3", "layer4"):
        getattr(net, stage).register_forward_hook(lambda m, i, o, stage=stage: ran.append(stage))
    assert set(net.forward_features(torch.randn(CLIP), ("conv3",))) == {"conv3"}
    assert ran == ["stem", "layer1", "layer2"]
    with pytest.raises(ValueError, match="conv6"):
        net.forward_features(torch.randn(CLIP), ("conv6",))


def test_parameter_counts_match_the_vcop_layouts():
    # VCOP reports C3D 27.7 M, R3D 14.4 M, R(2+1)D 14.4 M with these layouts
    counts = {name: n_params(build_backbone(name)) for name in ("c3d", "r3d", "r21d")}
    assert counts == {"c3d": 27_658_688, "r3d": 14_361_792, "r21d": 14_365_477}
    assert {k: round(v / 1e6, 1) for k, v in counts.items()} == {"c3d": 27.7, "r3d": 14.4, "r21d": 14.4}
    assert n_params(build_backbone("r3d", depth=18)) == 33_166_272  # torchvision's r3d_18 without fc


def _split(i: int, o: int, t: int, d: int) -> int:
    return (t * d * d * i * o) // (d * d * i + t * o)


class KeepParamsConv2Plus1D(Conv2Plus1D):
    """torchvision's Conv2Plus1D with the intermediate width that keeps each conv's own parameter count."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1):
        super().__init__(in_planes, out_planes, _split(in_planes, out_planes, 3, 3), stride, padding)


class KeepParamsStem(nn.Sequential):
    """torchvision's R2Plus1dStem layout with the parameter-keeping width (83) instead of 45."""

    def __init__(self) -> None:
        mid = _split(3, 64, 3, 7)
        super().__init__(
            nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, 64, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


@pytest.mark.parametrize("name,depth", [("r3d", 9), ("r3d", 18), ("r21d", 9)])
def test_state_dict_loads_strictly_into_torchvision_video_resnet(name, depth):
    torch.manual_seed(0)
    ours = build_backbone(name, depth=depth).eval()
    layers = [1] * 4 if depth == 9 else [2] * 4
    if name == "r3d":
        tv = VideoResNet(BasicBlock, [Conv3DSimple] * 4, layers, BasicStem)
    else:
        tv = VideoResNet(BasicBlock, [KeepParamsConv2Plus1D] * 4, layers, KeepParamsStem)
    tv.fc = nn.Identity()
    tv.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv.eval()(x))


@pytest.mark.parametrize("name", ["r3d", "r21d"])
def test_resnets_take_a_single_frame_spectrogram(name):
    net = build_backbone(name, in_channels=1, width=0.25)
    feats = net.forward_features(torch.randn(2, 1, 1, 32, 32), ("conv5", "pool"))
    assert feats["conv5"].shape == (2, 128, 1, 2, 2) and feats["pool"].shape == (2, 128)


def test_without_temporal_pooling_time_is_kept():
    for name in ("r3d", "c3d"):
        conv5 = build_backbone(name, width=0.25, temporal_pool=False).forward_features(torch.randn(CLIP), ("conv5",))[
            "conv5"
        ]
        assert conv5.shape == (2, 128, 8, 2, 2)


def test_bad_backbone_options_are_user_errors():
    with pytest.raises(UserError, match="r4d"):
        build_backbone("r4d")
    with pytest.raises(UserError, match="c3d"):
        build_backbone("c3d", depth=18)
    with pytest.raises(UserError, match="depth"):
        build_backbone("r3d", depth=34)


@pytest.mark.parametrize("name,depth", ALL)
def test_default_encoders_are_two_independent_backbones(name, depth):
    video, audio = build_encoders(ModelConfig(backbone=name, depth=depth, width=0.25))
    assert isinstance(audio, AudioEncoder) and audio.backbone is not video
    assert not {id(p) for p in video.parameters()} & {id(p) for p in audio.parameters()}
    assert video(torch.randn(CLIP)).shape == (2, 128)
    feats = audio.forward_features(torch.randn(SPEC), ("conv4", "pool"))
    assert feats["pool"].shape == (2, 128) and feats["conv4"].shape[1] == audio.layer_dims["conv4"]
    assert audio.out_dim == video.out_dim == 128


def test_shared_encoder_is_one_backbone_fed_the_repeated_spectrogram():
    torch.manual_seed(0)
    video, audio = build_encoders(ModelConfig(backbone="r3d", width=0.25, shared=True))
    assert audio.backbone is video
    assert n_params(nn.ModuleList([video, audio])) == n_params(video)
    spec = torch.randn(SPEC)
    video.eval()
    torch.testing.assert_close(audio(spec), video(spec.unsqueeze(2).repeat(1, 3, 1, 1, 1)))


def test_c3d_audio_without_temporal_pooling():
    _, audio = build_encoders(ModelConfig(backbone="c3d", width=0.25, c3d_audio="no_temporal_pool"))
    assert audio.to_clip(torch.randn(SPEC)).shape == (2, 1, 1, 32, 32)
    assert audio.forward_features(torch.randn(SPEC), ("conv5",))["conv5"].shape == (2, 128, 1, 2, 2)


def test_c3d_audio_tiled_to_sixteen_frames():
    _, audio = build_encoders(ModelConfig(backbone="c3d", width=0.25, c3d_audio="tile"))
    spec = torch.randn(SPEC)
    clip = audio.to_clip(spec)
    assert clip.shape == (2, 1, 16, 32, 32) and torch.equal(clip[:, :, 7], spec)
    assert audio.forward_features(spec, ("conv5",))["conv5"].shape == (2, 128, 2, 2, 2)  # T 16 -> 2


def test_shared_c3d_needs_the_tiled_spectrogram():
    with pytest.raises(UserError, match="c3d_audio=tile"):
        build_encoders(ModelConfig(backbone="c3d", shared=True))
    video, audio = build_encoders(ModelConfig(backbone="c3d", width=0.25, shared=True, c3d_audio="tile"))
    assert audio.backbone is video and audio(torch.randn(SPEC)).shape == (2, 128)


def test_audio_encoder_accepts_clip_shaped_spectrograms_and_names_bad_shapes():
    _, audio = build_encoders(ModelConfig(backbone="r3d", width=0.25))
    audio.eval()
    spec = torch.randn(SPEC)
    torch.testing.assert_close(audio(spec.unsqueeze(2)), audio(spec))
    with pytest.raises(ValueError, match=r"\(B, 1, F, Ta\)"):
        audio(torch.randn(2, 3, 32, 32))
