"""AMFM (paper Eq. 1-4) and the small heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avcl.models import AMFM, Classifier, mlp


def test_amfm_layer_sizes_follow_eq_1_and_2():
    amfm = AMFM(512, 512)
    assert (amfm.squeeze.in_features, amfm.squeeze.out_features) == (1024, 512)  # dim z = (512 + 512) / 2
    assert (amfm.excite.in_features, amfm.excite.out_features) == (512, 512)
    with pytest.raises(ValueError, match="dim_v"):
        AMFM(512, 256)
    with pytest.raises(ValueError, match="tanh"):
        AMFM(gate="tanh")


@pytest.mark.parametrize("gate", ["sigmoid", "relu"])
def test_one_gate_recalibrates_both_modalities(gate):
    torch.manual_seed(0)
    amfm = AMFM(8, 8, gate=gate)
    v, a = torch.randn(4, 8), torch.randn(4, 8)
    f_v, f_a = amfm(v, a)
    assert f_v.shape == f_a.shape == (4, 8)
    g = amfm.gate_values(v, a)
    e = amfm.excite(amfm.squeeze(torch.cat([v, a], dim=1)))
    torch.testing.assert_close(g, torch.sigmoid(e) if gate == "sigmoid" else torch.relu(e))
    if gate == "sigmoid":
        assert ((g > 0) & (g < 1)).all()
    else:
        assert (g >= 0).all() and (g == 0).any() and (g > 0).any()
    torch.testing.assert_close(f_v, g * v)
    torch.testing.assert_close(f_a, g * a)


def test_gradients_reach_both_layers_and_both_inputs():
    torch.manual_seed(0)
    amfm = AMFM(8, 8)
    v, a = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    f_v, f_a = amfm(v, a)
    (f_v.pow(2).sum() + f_a.sum()).backward()
    for tensor in (amfm.squeeze.weight, amfm.squeeze.bias, amfm.excite.weight, amfm.excite.bias, v, a):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_mlp_layouts():
    two = mlp(16, 32, 8)  # SimCLR projector
    assert [type(m) for m in two] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    three = mlp(16, 32, 32, layers=3, last_bn=True)
    assert [type(m) for m in three] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    plain = mlp(16, 32, 8, bn=False)
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear] and plain[0].bias is not None
    assert two(torch.randn(4, 16)).shape == (4, 8) and mlp(16, 32, 8, layers=1)(torch.randn(4, 16)).shape == (4, 8)


def test_classifier_applies_dropout_before_the_linear_layer():
    torch.manual_seed(0)
    head = Classifier(16, 5, dropout=0.7)
    x = torch.randn(64, 16)
    assert head(x).shape == (64, 5)
    head.eval()
    torch.testing.assert_close(head(x), head.fc(x))
    head.train()
    assert not torch.allclose(head(x), head.fc(x))
