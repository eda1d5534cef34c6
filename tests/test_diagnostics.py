"""Shortcut diagnostics: the gate-only check, gradient norms of the weighted terms, their epoch log."""

import json

import torch
from conftest import TINY, run_cli

from avcl.config import load_config
from avcl.evaluation.diagnostics import gate_only_check, gradient_norms, per_dim_correlation, verdict
from avcl.methods import build_method


def _pairs(n=64, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, d, generator=g)), torch.relu(torch.randn(n, d, generator=g)), g


def test_the_gate_only_check_detects_a_gate_that_is_the_only_shared_signal():
    v, a, g = _pairs()
    v, a = 1 + 0.1 * v, 1 + 0.1 * a  # collapsed, independent encoders: nothing in them matches across modalities
    gate = torch.where(torch.rand(v.shape, generator=g) > 0.5, 0.99, 0.01)  # a near-binary mask per pair
    r = gate_only_check(v, a, gate)
    assert r["encoder_top1"] < 0.1 and r["fused_top1"] > 0.5
    assert r["gate_only_top1"] > 0.9 and r["gate_only_selfcl"] < r["chance_selfcl"]
    assert r["explained"]
    assert verdict(r, "fused").startswith("SHORTCUT: the AMFM gate alone explains the loss")
    assert "do not go through the gate" in verdict(r, "projector")


def test_the_gate_only_check_passes_encoders_that_share_the_signal_themselves():
    v, _, g = _pairs()
    a = v + 0.1 * torch.rand(v.shape, generator=g)  # the audio features follow the video features
    for gate in (torch.full_like(v, 0.5), torch.sigmoid(0.05 * torch.randn(v.shape, generator=g))):
        r = gate_only_check(v, a, gate)
        assert r["encoder_top1"] > 0.9 and r["fused_top1"] > 0.9
        assert not r["explained"]
        assert verdict(r, "fused").startswith("GATE-ONLY CHECK: the gate alone does not explain")
    # a sample-specific gate that the loss did not shape: the gate-only features retrieve, yet explain nothing
    gate = torch.where(torch.rand(v.shape, generator=g) > 0.5, 0.99, 0.01)
    r = gate_only_check(v, a, gate)
    assert r["gate_only_top1"] > 0.9 and r["encoder_top1"] > 0.9 and not r["explained"]


def test_per_dim_correlation_of_identical_and_independent_features():
    v, a, _ = _pairs(n=2000)
    assert per_dim_correlation(v, v) > 0.999
    assert abs(per_dim_correlation(v, a)) < 0.05


def test_gradient_norms_are_those_of_the_weighted_terms_at_the_encoders_and_leave_the_model_untouched():
    torch.manual_seed(0)
    paper = ["method.loss_on=fused", "method.cgra_reduce=sum", "method.lambda_cor=0.9", "method.lambda_self=0.1"]
    method = build_method(load_config(None, ["model.width=0.125", *paper]))
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.randn(6, 3, 4, 32, 32, generator=g), "audio": torch.randn(6, 1, 28, 28, generator=g)}
    buffers = {k: v.clone() for k, v in method.named_buffers()}
    r = gradient_norms(method, batch)
    assert set(r) == {"grad_norm_cor", "grad_norm_self", "grad_ratio_cor_self"}
    assert abs(r["grad_ratio_cor_self"] - r["grad_norm_cor"] / r["grad_norm_self"]) < 1e-6 * r["grad_ratio_cor_self"]
    assert all(p.grad is None for p in method.parameters())
    assert all(torch.equal(v, buffers[k]) for k, v in method.named_buffers())
    # by hand: ||0.1 grad L_self|| over the encoder parameters
    params = [p for n, p in method.named_parameters() if n.startswith(("video_encoder", "audio_encoder"))]
    l_self = method.loss_terms(batch)["self"][1]
    manual = 0.1 * torch.sqrt(sum(x.pow(2).sum() for x in torch.autograd.grad(l_self, params)))
    assert abs(float(manual) - r["grad_norm_self"]) < 1e-4 * float(manual)
    # CGRA summed over D dimensions dwarfs SelfCL at the paper's weights; divided by D it does not
    mean = gradient_norms(
        build_method(load_config(None, ["model.width=0.125", *paper, "method.cgra_reduce=mean"])), batch
    )
    assert r["grad_ratio_cor_self"] > 10 * mean["grad_ratio_cor_self"]


def test_pretraining_logs_the_gradient_ratio_and_the_gate_only_check_every_epoch(tiny_cache, tmp_path):
    run_cli("pretrain", "--data", str(tiny_cache), "--out", str(tmp_path / "run"), *TINY, "train.epochs=2")
    epochs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["kind"] == "epoch"]
    assert len(epochs) == 2
    for e in epochs:
        assert e["grad_ratio_cor_self"] > 0 and e["grad_norm_self"] > 0
        assert 0 <= e["batch_gate_only_top1"] <= 1
