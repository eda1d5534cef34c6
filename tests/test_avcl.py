"""The AVCL method: Eq. 11 composition, every option of METHOD.md section 3, gradients and fused features."""
import pytest
import torch

from avcl.config import load_config
from avcl.losses import cross_correlation_loss, info_nce_cross_modal
from avcl.methods import build_method

TINY = ["model.width=0.125"]


def _batch(seed=0, b=6):
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(b, 3, 4, 32, 32, generator=g), "audio": torch.randn(b, 1, 28, 28, generator=g)}


def test_the_total_is_the_weighted_sum_of_cgra_and_selfcl_on_the_fused_features():
    method = build_method(load_config(None, [*TINY, "method.lambda_cor=0.7", "method.lambda_self=0.3"]))
    batch = _batch()
    out = method(batch)
    v, a = method.video_encoder(batch["video"]), method.audio_encoder(batch["audio"])
    f_v, f_a = method.amfm(v, a)
    torch.testing.assert_close(out["loss_cor"], cross_correlation_loss(f_v, f_a, lambd=0.005))
    torch.testing.assert_close(out["loss_self"], info_nce_cross_modal(f_v, f_a, temperature=0.5))
    torch.testing.assert_close(out["loss"], 0.7 * out["loss_cor"] + 0.3 * out["loss_self"])


def test_gradients_reach_both_encoders_and_amfm():
    method = build_method(load_config(None, TINY))
    method(_batch())["loss"].backward()
    for name in ("video_encoder", "audio_encoder", "amfm"):
        grads = [p.grad for n, p in method.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("overrides, parts", [
    (["method.cgra=false"], {"loss", "loss_self"}),
    (["method.selfcl=false"], {"loss", "loss_cor"}),
    (["method.cgra_layer=conv3"], {"loss", "loss_cor", "loss_self"}),
    (["method.cgra_layer=conv4"], {"loss", "loss_cor", "loss_self"}),
    (["method.cgra_layer=conv5+pool"], {"loss", "loss_cor", "loss_self"}),
    (["method.amfm=false"], {"loss", "loss_cor", "loss_self"}),
    (["method.gate=relu"], {"loss", "loss_cor", "loss_self"}),
    (["method.standardize=false"], {"loss", "loss_cor", "loss_self"}),
    (["model.shared=true"], {"loss", "loss_cor", "loss_self"}),
    (["model.backbone=c3d"], {"loss", "loss_cor", "loss_self"}),
    (["model.backbone=r21d", "model.depth=18"], {"loss", "loss_cor", "loss_self"}),
])
def test_every_option_builds_trains_and_reports_its_parts(overrides, parts):
    method = build_method(load_config(None, [*TINY, *overrides]))
    batch = _batch()
    if "model.backbone=c3d" in overrides:  # C3D pools time three times: 8 frames at least
        batch["video"] = batch["video"].repeat(1, 1, 2, 1, 1)
    out = method(batch)
    assert set(out) == parts and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert (method.amfm is None) == ("method.amfm=false" in overrides)


def test_one_shared_model_has_one_set_of_encoder_weights():
    two = build_method(load_config(None, TINY))
    one = build_method(load_config(None, [*TINY, "model.shared=true"]))
    enc = lambda m: sum(p.numel() for n, p in m.named_parameters() if "encoder" in n)  # noqa: E731
    assert enc(one) < 0.6 * enc(two)


def test_aligned_pairs_score_a_lower_selfcl_than_shuffled_pairs_after_a_few_steps():
    torch.manual_seed(0)
    method = build_method(load_config(None, [*TINY, "method.lambda_cor=0.0", "method.lambda_self=1.0"]))
    batch = _batch(b=8)
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    for _ in range(15):
        loss = method(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.eval()
    with torch.no_grad():
        f_v, f_a = method.fuse(method.video_encoder(batch["video"]), method.audio_encoder(batch["audio"]))
        aligned = info_nce_cross_modal(f_v, f_a)
        shuffled = info_nce_cross_modal(f_v, f_a.roll(1, dims=0))
    assert aligned < shuffled


def test_evaluation_features_are_the_fused_features_for_both_modalities():
    method = build_method(load_config(None, TINY)).eval()
    b = _batch()
    with torch.no_grad():
        both = method.embed(b["video"], b["audio"], "both")
        f_v, f_a = method.amfm(method.video_encoder(b["video"]), method.audio_encoder(b["audio"]))
        assert torch.allclose(both, torch.cat([f_v, f_a], 1))
        assert torch.allclose(method.embed(b["video"], None, "video"), method.video_encoder(b["video"]))


def test_c3d_on_too_short_clips_is_a_clear_error():
    from avcl.errors import UserError

    method = build_method(load_config(None, [*TINY, "model.backbone=c3d"]))
    with pytest.raises(UserError, match="at least 8 frames"):
        method(_batch())
