"""scripts/factor_probe.py: what random-init and pretrained encoders read of the synthetic class, and
from still frames."""

import importlib.util

import torch
from conftest import ROOT, TINY, run_cli

from avcl.config import ModelConfig
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


def test_factor_tables_of_random_and_pretrained_encoders(tiny_cache, tmp_path):
    probe = _script()
    overrides = tuple(TINY)
    moving = probe.factor_table(str(tiny_cache), None, 0, overrides=overrides)
    static = probe.factor_table(str(tiny_cache), None, 0, static=True, overrides=overrides)
    _valid(moving)
    _valid(static)
    assert static["audio"] == moving["audio"]  # the still frames change what the video encoder sees, only
    run_cli(
        "pretrain",
        "--data",
        str(tiny_cache),
        "--out",
        str(tmp_path / "run"),
        *TINY,
        "method.name=simclr",
        "train.epochs=1",
    )
    _valid(probe.factor_table(str(tiny_cache), None, 0, checkpoint=str(tmp_path / "run" / "last.pt")))
