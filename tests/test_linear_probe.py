"""The linear probe: regularised (weight decay and the scale between modalities picked on the
validation split), deterministic, one feature pass per split for every modality."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

from avcl.config import load_config
from avcl.evaluation.probe import _embed_modalities, _fit_probe, linear_probe, linear_probes

GRID = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def _features(videos_per_class: int, generator: torch.Generator, classes: int = 8, dim: int = 64, clips: int = 4):
    """Modality A: class means plus per-video and per-clip noise; modality B: the same noise, no class."""
    y = torch.arange(classes).repeat_interleave(videos_per_class)
    means = 0.25 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(0))
    a = (
        means[y][:, None]
        + torch.randn(len(y), 1, dim, generator=generator)
        + 0.5 * torch.randn(len(y), clips, dim, generator=generator)
    )
    b = torch.randn(len(y), 1, dim, generator=generator) + 0.5 * torch.randn(len(y), clips, dim, generator=generator)
    return a, b, y


def _accuracy(probe, x, y) -> float:
    with torch.no_grad():
        return 100.0 * float((probe(x).mean(dim=1).argmax(1) == y).float().mean())


def test_adding_a_modality_that_carries_nothing_costs_at_most_noise():
    g = torch.Generator().manual_seed(1)
    (a_tr, b_tr, y_tr), (a_va, b_va, y_va), (a_te, b_te, y_te) = (_features(n, g) for n in (42, 10, 100))
    blocks = (a_tr.shape[-1], b_tr.shape[-1])

    def accuracy(parts, weight_decays=GRID, with_blocks=True):
        cat = lambda *xs: torch.cat(xs, dim=-1)  # noqa: E731
        x_tr, x_va, x_te = (cat(*[p[i] for p in parts]) for i in range(3))
        probe, _ = _fit_probe(
            x_tr, y_tr, x_va, y_va, 8, weight_decays, 100, blocks if with_blocks and len(parts) == 2 else None
        )
        return _accuracy(probe, x_te, y_te)

    a, b = (a_tr, a_va, a_te), (b_tr, b_va, b_te)
    alone = accuracy([a])
    assert alone > 40  # chance is 12.5: A carries the class
    # 800 test videos: 2 points is about one standard error of the difference
    assert accuracy([a, b]) >= alone - 2.0
    assert accuracy([b, a]) >= alone - 2.0  # whichever side the noise is on
    # the construction is hard enough to need the regularisation: unregularised, B costs a lot
    assert accuracy([a, b], [0.0], with_blocks=False) < alone - 8.0


def test_the_probe_is_deterministic_and_reports_its_choice():
    g = torch.Generator().manual_seed(2)
    (a_tr, _, y_tr), (a_va, _, y_va) = (_features(n, g, classes=4, dim=16) for n in (20, 5))
    p1, c1 = _fit_probe(a_tr, y_tr, a_va, y_va, 4, GRID)
    p2, c2 = _fit_probe(a_tr, y_tr, a_va, y_va, 4, GRID)
    assert torch.equal(p1.weight, p2.weight) and torch.equal(p1.bias, p2.bias) and c1 == c2
    assert c1["weight_decay"] in GRID and len(c1["val"]) == len(GRID)
    # without a validation split, held-out training videos make the choice
    _, c3 = _fit_probe(a_tr, y_tr, None, None, 4, GRID)
    assert c3["weight_decay"] in GRID and len(c3["val"]) == len(GRID)
    _, c4 = _fit_probe(a_tr, y_tr, a_va, y_va, 4, [0.01])
    assert c4["weight_decay"] == 0.01 and c4["val"] == []


def test_the_probe_fits_on_one_thread_and_gives_the_callers_thread_count_back_even_on_error(monkeypatch):
    import avcl.evaluation.probe as probe_module

    seen = []
    fit = probe_module._standardised_fits

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(probe_module, "_standardised_fits", spy)
        g = torch.Generator().manual_seed(3)
        (a_tr, _, y_tr), (a_va, _, y_va) = (_features(n, g, classes=4, dim=16) for n in (20, 5))
        _fit_probe(a_tr, y_tr, a_va, y_va, 4, [0.01, 0.1])
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):  # validation features of the wrong width
            _fit_probe(a_tr, y_tr, a_va[:, :, :3], y_va, 4, [0.01, 0.1])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_one_pass_gives_each_modality_exactly_as_embed_does():
    from avcl.methods import build_method

    cfg = load_config(None, [*TINY])
    torch.manual_seed(0)
    method = build_method(cfg).eval()  # AVCL: "both" is the AMFM-fused pair
    batch = {"video": torch.randn(3, 3, 4, 32, 32), "audio": torch.randn(3, 1, 28, 28)}
    with torch.no_grad():
        together = _embed_modalities(method, ("video", "audio", "both"))(batch)
        apart = torch.cat([method.embed(batch["video"], batch["audio"], m) for m in ("video", "audio", "both")], 1)
    assert torch.allclose(together, apart, atol=1e-6)
    assert type(method.video_encoder).__name__ != "_Given"  # the encoders are put back


def test_probes_of_every_modality_from_one_extraction(tiny_cache, tmp_path, monkeypatch):
    import avcl.evaluation.probe as classify
    from avcl.experiments import random_encoders

    cfg = load_config(None, [*TINY, f"data.root={tiny_cache}"])
    method = random_encoders(cfg, 4)
    calls = []
    extract = classify.extract_features
    monkeypatch.setattr(classify, "extract_features", lambda *a, **k: calls.append(a[2]) or extract(*a, **k))
    results = linear_probes(method, cfg, tmp_path, title="random")
    assert calls == ["train", "val", "test"]  # one pass per split for the three probes
    assert {m: r["feature_dim"] for m, r in results.items()} == {"video": 64, "audio": 64, "both": 128}
    assert results["both"]["block_scale"] is not None and results["video"]["block_scale"] is None
    assert all((tmp_path / m / "confusion.png").is_file() for m in results)
    alone = linear_probe(method, cfg, None, modality="audio")
    assert alone["top1"] == results["audio"]["top1"] and alone["weight_decay"] == results["audio"]["weight_decay"]
