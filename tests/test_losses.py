"""The loss functions against hand-computed cases and direct implementations of the paper's equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avcl.losses import cross_correlation_loss, info_nce_cross_modal, negative_cosine


def hadamard_columns(n: int = 8, d: int = 4) -> torch.Tensor:
    """``(n, d)`` of +-1 with zero-mean, unit-variance, mutually orthogonal columns (Sylvester's H_n)."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:, 1 : d + 1]  # column 0 is constant


@pytest.mark.parametrize("standardize", [True, False])
def test_cross_correlation_of_orthonormal_identical_features_is_zero(standardize):
    z = hadamard_columns()
    assert cross_correlation_loss(z, z.clone(), standardize=standardize, eps=0.0) < 1e-12
    # the default eps makes C_ii = 1 / (1 + 1e-5): a loss of 4 * (1e-5)^2, zero to float32 precision
    assert cross_correlation_loss(z, z.clone(), standardize=standardize).item() == pytest.approx(4e-10, rel=0.05)
    # anti-correlated: C = -I, each diagonal term is (1 - (-1))^2
    assert cross_correlation_loss(z, -z, standardize=standardize, eps=0.0).item() == pytest.approx(16.0)


def test_cross_correlation_matches_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(6, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
    z2 = 0.7 * z1 @ rng.normal(size=(3, 3)) + rng.normal(size=(6, 3))
    lambd, eps = 0.005, 1e-5

    def barlow(c: np.ndarray) -> float:
        off = c - np.diag(np.diag(c))
        return float(((1 - np.diag(c)) ** 2).sum() + lambd * (off**2).sum())

    # Barlow Twins: batch norm (biased variance + eps), then C = z1n^T z2n / N
    n1 = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    n2 = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    standardized = barlow(n1.T @ n2 / len(z1))
    # Eq. 6 as printed, element by element
    c6 = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            c6[i, j] = (z1[:, i] * z2[:, j]).sum() / (np.sqrt((z1[:, i] ** 2).sum()) * np.sqrt((z2[:, j] ** 2).sum()))
    printed = barlow(c6)

    t1, t2 = torch.tensor(z1, dtype=torch.float32), torch.tensor(z2, dtype=torch.float32)
    assert cross_correlation_loss(t1, t2, lambd=lambd).item() == pytest.approx(standardized, rel=1e-5)
    assert cross_correlation_loss(t1, t2, lambd=lambd, standardize=False, eps=0.0).item() == pytest.approx(
        printed, rel=1e-5
    )
    assert standardized != pytest.approx(printed, rel=1e-2)  # centring matters for these non-centred features


def test_standardized_cross_correlation_ignores_per_dimension_shift_and_scale():
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 5), torch.randn(16, 5)
    moved = z1 * torch.tensor([1.0, 10.0, 0.1, 3.0, 2.0]) + torch.tensor([5.0, -3.0, 100.0, 0.0, 1.0])
    torch.testing.assert_close(
        cross_correlation_loss(moved, z2, eps=0.0), cross_correlation_loss(z1, z2, eps=0.0), rtol=1e-4, atol=1e-5
    )


def selfcl_from_the_equations(v: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 7-10 written out term by term, with the mean over anchors instead of the sum."""
    n = len(v)

    def h(x, y):  # Eq. 8
        return torch.exp(torch.dot(x, y) / (x.norm() * y.norm()) / tau)

    def one_modality(x, y):  # Eq. 7 (x = v) and Eq. 9 (x = a)
        total = 0.0
        for i in range(n):
            denominator = sum(h(x[i], y[j]) for j in range(n)) + sum(h(x[i], x[j]) for j in range(n) if j != i)
            total = total - torch.log(h(x[i], y[i]) / denominator)
        return total / n

    return one_modality(v, a) + one_modality(a, v)  # Eq. 10


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_selfcl_equals_the_paper_equations(tau):
    torch.manual_seed(0)
    v, a = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    expected = selfcl_from_the_equations(v, a, tau)
    torch.testing.assert_close(info_nce_cross_modal(v, a, temperature=tau).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        info_nce_cross_modal(v, a, temperature=tau, gather=False).double(), expected, rtol=1e-5, atol=1e-6
    )


def test_selfcl_prefers_aligned_pairs():
    torch.manual_seed(0)
    v = torch.randn(16, 32)
    a = v + 0.3 * torch.randn(16, 32)
    shuffled = a[torch.randperm(16)]
    assert info_nce_cross_modal(v, a) < info_nce_cross_modal(v, shuffled) - 1.0


@pytest.mark.parametrize("n", [4, 32])
def test_selfcl_is_a_mean_over_anchors(n):
    # at a huge temperature every exp(cos / tau) is 1: each anchor scores log(2n - 1) per direction,
    # whatever the batch size, because the loss averages over anchors instead of summing
    torch.manual_seed(0)
    v, a = torch.randn(n, 8), torch.randn(n, 8)
    assert info_nce_cross_modal(v, a, temperature=1e6).item() == pytest.approx(2 * math.log(2 * n - 1), rel=1e-5)


@pytest.mark.parametrize(
    "loss",
    [
        lambda v, a: info_nce_cross_modal(v, a),
        lambda v, a: cross_correlation_loss(v, a),
        lambda v, a: cross_correlation_loss(v, a, standardize=False),
    ],
)
def test_gradients_reach_both_inputs(loss):
    torch.manual_seed(0)
    v, a = torch.randn(8, 6, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    loss(v, a).backward()
    assert v.grad.abs().sum() > 0 and a.grad.abs().sum() > 0
    assert torch.isfinite(v.grad).all() and torch.isfinite(a.grad).all()


def test_losses_run_in_float32_under_autocast():
    torch.manual_seed(0)
    v, a = torch.randn(8, 6), torch.randn(8, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = [info_nce_cross_modal(v.bfloat16(), a.bfloat16()), cross_correlation_loss(v, a)]
    assert all(x.dtype == torch.float32 for x in values)
    torch.testing.assert_close(values[1], cross_correlation_loss(v, a))


def test_negative_cosine_stops_the_gradient_of_its_target():
    torch.manual_seed(0)
    p, z = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    assert negative_cosine(p, p.detach() * 3).item() == pytest.approx(-1.0)
    assert negative_cosine(p, -p.detach()).item() == pytest.approx(1.0)
    value = negative_cosine(p, z)
    torch.testing.assert_close(value, -F.cosine_similarity(p, z, dim=1).mean())
    value.backward()
    assert p.grad is not None and z.grad is None


def test_cross_correlation_mean_reduction_is_the_sum_divided_by_the_dimension():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(10, 7, generator=g), torch.randn(10, 7, generator=g)
    for standardize in (True, False):
        total = cross_correlation_loss(z1, z2, standardize=standardize)
        torch.testing.assert_close(cross_correlation_loss(z1, z2, standardize=standardize, reduction="mean"), total / 7)
    with pytest.raises(ValueError, match="reduction"):
        cross_correlation_loss(z1, z2, reduction="max")
