"""The AVCL method: Eq. 11 composition, every option of METHOD.md section 3, gradients and fused features."""

import pytest
import torch

from avcl.config import load_config
from avcl.losses import cross_correlation_loss, info_nce_cross_modal
from avcl.methods import build_method

TINY = ["model.width=0.125"]
PAPER_LOSS = ["method.loss_on=fused", "method.cgra_reduce=sum"]  # the losses on the AMFM outputs, Eq. 5 summed
HALF = ["method.lambda_cor=0.5", "method.lambda_self=0.5"]


def _batch(seed=0, b=6):
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(b, 3, 4, 32, 32, generator=g), "audio": torch.randn(b, 1, 28, 28, generator=g)}


def test_the_total_is_the_weighted_sum_of_cgra_and_selfcl_on_the_fused_features():
    method = build_method(load_config(None, [*TINY, *PAPER_LOSS, "method.lambda_cor=0.7", "method.lambda_self=0.3"]))
    batch = _batch()
    out = method(batch)
    v, a = method.video_encoder(batch["video"]), method.audio_encoder(batch["audio"])
    f_v, f_a = method.amfm(v, a)
    torch.testing.assert_close(out["loss_cor"], cross_correlation_loss(f_v, f_a, lambd=0.005))
    torch.testing.assert_close(out["loss_self"], info_nce_cross_modal(f_v, f_a, temperature=0.5))
    torch.testing.assert_close(out["loss"], 0.7 * out["loss_cor"] + 0.3 * out["loss_self"])


def test_gradients_reach_both_encoders_and_amfm_when_the_losses_are_on_the_fused_features():
    method = build_method(load_config(None, [*TINY, *PAPER_LOSS]))
    method(_batch())["loss"].backward()
    for name in ("video_encoder", "audio_encoder", "amfm"):
        grads = [p.grad for n, p in method.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize(
    "overrides, parts",
    [
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
        (["method.loss_on=fused"], {"loss", "loss_cor", "loss_self"}),
        (["method.loss_on=encoder"], {"loss", "loss_cor", "loss_self"}),
        (
            ["method.loss_on=projector", "method.proj_dim=16", "method.proj_hidden=32"],
            {"loss", "loss_cor", "loss_self"},
        ),
        (["method.cgra_reduce=sum"], {"loss", "loss_cor", "loss_self"}),
    ],
)
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
    method = build_method(load_config(None, [*TINY, *PAPER_LOSS, "method.lambda_cor=0.0", "method.lambda_self=1.0"]))
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


@pytest.mark.parametrize("loss_on", ["encoder", "projector"])
def test_off_the_fused_path_the_losses_compare_the_encoder_or_projector_features_and_amfm_gets_no_gradient(loss_on):
    method = build_method(load_config(None, [*TINY, f"method.loss_on={loss_on}", "method.proj_dim=16"]))
    batch = _batch()
    out = method(batch)
    v, a = method.video_encoder(batch["video"]), method.audio_encoder(batch["audio"])
    z_v, z_a = (method.video_proj(v), method.audio_proj(a)) if loss_on == "projector" else (v, a)
    assert z_v.shape[1] == (16 if loss_on == "projector" else method.feature_dim)
    torch.testing.assert_close(out["loss_cor"], cross_correlation_loss(z_v, z_a, lambd=0.005, reduction="mean"))
    torch.testing.assert_close(out["loss_self"], info_nce_cross_modal(z_v, z_a, temperature=0.5))
    out["loss"].backward()
    assert all(p.grad is None for p in method.amfm.parameters())
    assert all(p.grad is not None for p in method.video_encoder.parameters())
    assert method.find_unused_parameters  # DDP must not wait for AMFM's gradient
    assert hasattr(method, "video_proj") == (loss_on == "projector")


def test_the_pregate_features_are_the_encoders_features_concatenated():
    method = build_method(load_config(None, TINY)).eval()
    b = _batch()
    with torch.no_grad():
        pre = method.embed(b["video"], b["audio"], "both", features="pregate")
        assert torch.allclose(pre, torch.cat([method.video_encoder(b["video"]), method.audio_encoder(b["audio"])], 1))


def test_a_config_saved_before_loss_on_existed_rebuilds_the_fused_summed_method():
    from avcl.config import config_from_dict

    tree = load_config(None, TINY).to_dict()
    del tree["method"]["loss_on"], tree["method"]["cgra_reduce"]
    cfg = config_from_dict(tree)
    assert (cfg.method.loss_on, cfg.method.cgra_reduce) == ("fused", "sum")
    assert not hasattr(build_method(cfg), "video_proj")


def test_c3d_on_too_short_clips_is_a_clear_error():
    from avcl.errors import UserError

    method = build_method(load_config(None, [*TINY, "model.backbone=c3d"]))
    with pytest.raises(UserError, match="at least 8 frames"):
        method(_batch())


def _flat(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("backbone", ["r3d", "c3d", "r21d"])
def test_the_paper_literal_preset_differs_from_the_default_exactly_in_the_documented_keys(backbone):
    from pathlib import Path

    from avcl.config import PAPER_LITERAL, PAPER_WEIGHTS, Config

    configs = Path(__file__).resolve().parents[1] / "configs"
    default = dict(_flat(load_config(configs / f"avcl_{backbone}.yaml").to_dict()))
    paper = dict(_flat(load_config(configs / f"avcl_paper_{backbone}.yaml").to_dict()))
    differ = {k for k in default if default[k] != paper[k]}
    assert differ == set(PAPER_LITERAL) | {"train.out"}
    assert {k: paper[k] for k in PAPER_LITERAL} == PAPER_LITERAL
    assert {k: paper[k] for k in PAPER_WEIGHTS} == PAPER_WEIGHTS  # the paper's weights, set in the preset
    # the method defaults are the avcl_* presets' method options: PAPER_LITERAL is what the defaults change
    built_in = dict(_flat(Config().to_dict()))
    assert {k: default[k] for k in default if k.startswith("method.")} == {
        k: built_in[k] for k in built_in if k.startswith("method.")
    }


def _feature_grad_norm(method, batch, term):
    """Norm of one unweighted term's gradient at the encoders' pool features, computed independently."""
    v = method.video_encoder.forward_features(batch["video"], ("pool",))["pool"]
    a = method.audio_encoder.forward_features(batch["audio"], ("pool",))["pool"]
    z_v, z_a = method.loss_features(v, a)
    m = method.cfg.method
    loss = (
        cross_correlation_loss(z_v, z_a, lambd=m.cgra_lambda, standardize=m.standardize, reduction=m.cgra_reduce)
        if term == "cor"
        else info_nce_cross_modal(z_v, z_a, temperature=m.temperature)
    )
    return float(torch.cat([g.flatten() for g in torch.autograd.grad(loss, [v, a])]).norm())


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_gradnorm_balance_weights_the_terms_by_their_measured_gradient_norms(reduce):
    overrides = [*TINY, *PAPER_LOSS, f"method.cgra_reduce={reduce}", "method.balance=gradnorm"]
    method = build_method(load_config(None, [*overrides, "method.lambda_cor=0.9", "method.lambda_self=0.1"]))
    method.train()
    batch = _batch()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    norms = {t: _feature_grad_norm(method, batch, t) for t in ("cor", "self")}
    method.load_state_dict(state)  # the BatchNorm statistics of the reference forward undone
    out = method(batch)
    # first step: the running means are this step's norms
    torch.testing.assert_close(method.grad_norm_avg, torch.tensor([norms["cor"], norms["self"]]), rtol=1e-4, atol=0)
    mean = (norms["cor"] + norms["self"]) / 2
    assert mean / norms["self"] < 100 and mean / norms["cor"] < 100  # below the cap here
    assert out["weight_cor"].item() == pytest.approx(0.9 * mean / norms["cor"], rel=1e-4)
    assert out["weight_self"].item() == pytest.approx(0.1 * mean / norms["self"], rel=1e-4)
    torch.testing.assert_close(out["loss"], out["weight_cor"] * out["loss_cor"] + out["weight_self"] * out["loss_self"])
    # the weighted gradients at the features stand in the ratio of the lambdas, whatever CGRA's scale
    ratio = (out["weight_cor"] * norms["cor"]) / (out["weight_self"] * norms["self"])
    assert ratio.item() == pytest.approx(9.0, rel=1e-4)


def test_gradnorm_running_norms_move_by_momentum_are_saved_and_stay_out_of_evaluation():
    cfg = load_config(None, [*TINY, "method.balance=gradnorm"])
    method = build_method(cfg)
    method.train()
    method(_batch(0))
    first = method.grad_norm_avg.clone()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    now = torch.tensor([_feature_grad_norm(method, _batch(1), t) for t in ("cor", "self")])
    method.load_state_dict(state)
    method(_batch(1))
    torch.testing.assert_close(method.grad_norm_avg, 0.9 * first + 0.1 * now, rtol=1e-4, atol=0)
    assert "grad_norm_avg" in method.state_dict()  # in every checkpoint, so a resumed run goes on with it
    method.eval()
    kept = method.grad_norm_avg.clone()
    with torch.no_grad():
        method(_batch(2))
    torch.testing.assert_close(method.grad_norm_avg, kept)
    # a term whose gradient has all but vanished is scaled up by at most MAX_SCALE
    method.grad_norm_avg.copy_(torch.tensor([1.0, 1e-9]))
    weights = {name: float(w) for name, (w, _) in method.loss_terms(_batch(3)).items()}
    assert weights["self"] == pytest.approx(cfg.method.lambda_self * 100)
    # fixed weights: no running norms, no weight entries, the lambdas as given
    fixed = build_method(load_config(None, TINY))
    assert not hasattr(fixed, "grad_norm_avg") and "weight_cor" not in fixed(_batch())


def test_gradnorm_logs_weights_and_gradient_ratio_at_the_encoders_follows_the_lambdas():
    from avcl.methods.diagnostics import gradient_norms

    cfg = load_config(None, [*TINY, *PAPER_LOSS, "method.balance=gradnorm", *HALF])
    method = build_method(cfg)
    method.train()
    for seed in range(3):
        method(_batch(seed))
    diag = gradient_norms(method, _batch(0))
    # balanced at the features, the ratio at the encoders' weights is of the order of the lambdas' (1),
    # not the hundreds that CGRA summed over D gives with fixed weights
    assert 0.1 < diag["grad_ratio_cor_self"] < 10
    fixed = gradient_norms(build_method(load_config(None, [*TINY, *PAPER_LOSS, *HALF])), _batch(0))
    assert fixed["grad_ratio_cor_self"] > 10 * diag["grad_ratio_cor_self"]
