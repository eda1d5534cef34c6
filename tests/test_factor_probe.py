"""scripts/factor_probe.py: what random-init and pretrained encoders read of the synthetic class, and
from still frames."""

import importlib.util

import torch
from conftest import ROOT, TINY, run_cli

from avcl.config import ModelConfig
from avcl.engine.checkpoint import load_checkpoint
from avcl.models import build_encoders


def _script():
    spec = importlib.util.spec_from_file_location("factor_probe", ROOT / "scripts" / "factor_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _valid(table):
    assert set(table) == {"video", "audio", "both"}
    for row in table.values():
        assert set(row) == {"class", "pattern", "timbre"}
        assert all(0.0 <= v <= 100.0 for v in row.values())


def test_the_still_frame_encoder_sees_the_first_frame_in_every_position():
    video, _ = build_encoders(ModelConfig(width=0.125))
    video.eval()
    clip = torch.rand(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    still = _script()._FirstFrame(video)
    with torch.no_grad():
        frozen = clip[:, :, :1].repeat(1, 1, 4, 1, 1)
        assert torch.equal(still(clip), video(frozen))
        assert not torch.allclose(still(clip), video(clip))


def test_factor_tables_of_random_and_pretrained_encoders(tiny_cache, tmp_path, monkeypatch):
    probe = _script()
    seen = []  # (method, cfg, split, features) of every extract_features call
    extract = probe.extract_features

    def recording(method, cfg, split, modalities):
        feats = extract(method, cfg, split, modalities)
        seen.append((method, cfg, split, feats[0]))
        return feats

    monkeypatch.setattr(probe, "extract_features", recording)
    overrides = tuple(TINY)
    moving = probe.factor_table(str(tiny_cache), None, 0, overrides=overrides)
    static = probe.factor_table(str(tiny_cache), None, 0, static=True, overrides=overrides)
    _valid(moving)
    _valid(static)
    (m_train, s_train) = (f for _, _, split, f in seen if split == "train")
    assert torch.equal(m_train["audio"], s_train["audio"])  # the still frames change the video only ...
    assert not torch.allclose(m_train["video"], s_train["video"])  # ... and change it
    assert static["audio"] == moving["audio"]

    run = tmp_path / "run"
    run_cli("pretrain", "--data", str(tiny_cache), "--out", str(run), *TINY, "method.name=simclr", "train.epochs=1")
    seen.clear()
    _valid(probe.factor_table(str(tiny_cache), None, 0, checkpoint=str(run / "last.pt")))
    method, cfg, _, _ = seen[0]
    assert cfg.data.root == str(tiny_cache) and cfg.method.name == "simclr"
    saved = load_checkpoint(run / "last.pt")["model"]
    for name, value in method.video_encoder.state_dict().items():
        assert torch.equal(value, saved[f"video_encoder.{name}"])  # the checkpoint's weights, not a fresh init
