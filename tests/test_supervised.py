"""The supervised model: baselines from scratch, and fine-tuning that shares (not copies) pretrained
encoders and trains only what the classifier's features depend on."""

import pytest
import torch

from avcl.config import load_config
from avcl.methods import build_method
from avcl.methods.supervised import Supervised

TINY = ["model.width=0.125", "data.clip_len=4", "data.crop_size=32", "data.audio_size=32", "data.audio_crop=28"]


def _trainable(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "name, modality, frozen_prefixes",
    [
        ("simclr", "both", ("video_proj", "audio_proj")),
        ("byol", "both", ("target", "video_pred", "audio_pred", "video_proj")),
        ("avcl", "video", ("audio_encoder", "amfm")),
        ("avcl", "both", ()),
    ],
)
def test_finetuning_freezes_exactly_the_parts_the_features_do_not_use(name, modality, frozen_prefixes):
    cfg = load_config(None, [*TINY, f"method.name={name}"])
    pretrained = build_method(cfg)
    pretrained.embed = None  # building the model runs nothing: what it trains is what eval_modules declares
    model = Supervised(cfg, 3, modality=modality, backbone_method=pretrained)
    del pretrained.embed
    trainable = _trainable(model)
    assert any(n.startswith("backbone_method.video_encoder") for n in trainable)
    assert all(n.startswith(("backbone_method.", "classifier.")) for n in trainable)
    for prefix in frozen_prefixes:
        names = [n for n, _ in pretrained.named_parameters() if n.startswith(prefix)]
        assert names, f"{name} has no parameters under {prefix}"
        assert not any(f"backbone_method.{n}" in trainable for n in names), prefix
    if name == "avcl" and modality == "both":
        assert any(n.startswith("backbone_method.amfm") for n in trainable)
    # Encoders are shared, and each weight appears once in the state dict.
    assert model.video_encoder is pretrained.video_encoder
    assert not any(k.startswith("video_encoder.") for k in model.state_dict())
    batch = {
        "video": torch.randn(4, 3, 4, 32, 32),
        "audio": torch.randn(4, 1, 28, 28),
        "label": torch.tensor([0, 1, 2, 0]),
    }
    out = model(batch)
    out["loss"].backward()
    assert 0 <= float(out["acc"]) <= 100
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("modality", ["video", "audio", "both"])
def test_a_baseline_from_scratch_reads_only_its_modality(modality):
    cfg = load_config(None, TINY)
    model = Supervised(cfg, 4, modality=modality)
    assert (model.uses_video, model.uses_audio) == (modality != "audio", modality != "video")
    batch = {"label": torch.tensor([0, 1])}
    if model.uses_video:
        batch["video"] = torch.randn(2, 3, 4, 32, 32)
    if model.uses_audio:
        batch["audio"] = torch.randn(2, 1, 28, 28)
    assert model.logits(batch).shape == (2, 4)
