"""Retrieval top-k, weighted kNN and Grad-CAM against hand-made features and toy networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avcl.evaluation.gradcam import grad_cam, overlay
from avcl.evaluation.neighbours import knn_accuracy, nearest_neighbours, retrieval_topk, vcop_features


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).float()


@pytest.mark.parametrize("convention", ["vcop", "pooled"])
def test_features_equal_to_labels_retrieve_perfectly(convention):
    train_y, test_y = torch.arange(40) % 8, torch.arange(16) % 8
    train, test = _one_hot(train_y, 8) + 0.01 * torch.randn(40, 8), _one_hot(test_y, 8)
    result = retrieval_topk(train, train_y, test, test_y, convention=convention)
    assert result == {"top1": 100.0, "top5": 100.0, "top10": 100.0, "top20": 100.0, "top50": 100.0}
    assert knn_accuracy(train, train_y, test, test_y, num_classes=8)["top1"] == 100.0


def test_shuffled_features_are_at_chance():
    generator = torch.Generator().manual_seed(0)
    classes, n = 10, 2000
    train_y = torch.randint(classes, (n,), generator=generator)
    test_y = torch.randint(classes, (n,), generator=generator)
    train, test = torch.randn(n, 32, generator=generator), torch.randn(n, 32, generator=generator)
    top = retrieval_topk(train, train_y, test, test_y, ks=(1, 5))
    # chance of a hit within k draws: 1 - (1 - 1/classes)^k
    assert abs(top["top1"] - 10.0) < 2.5
    assert abs(top["top5"] - 100 * (1 - 0.9**5)) < 3.5
    assert abs(knn_accuracy(train, train_y, test, test_y, classes)["top1"] - 10.0) < 2.5


def test_the_hit_rule_is_any_of_the_k_nearest():
    # Gallery along a line; the query's nearest is of another class, its 2nd nearest of its own.
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    train_y = torch.tensor([1, 0, 2, 3])
    query = torch.tensor([[1.0, 0.05]])
    result = retrieval_topk(train, train_y, query, torch.tensor([0]), ks=(1, 2, 3, 50))
    assert result == {"top1": 0.0, "top2": 100.0, "top3": 100.0, "top50": 100.0}
    assert nearest_neighbours(train, query, k=2, convention="vcop").tolist() == [[0, 1]]


def test_knn_votes_are_weighted_by_similarity():
    # Two close neighbours of class 0 outvote three distant ones of class 1 at a low temperature.
    train = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 1.0], [0.2, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1, 1])
    query = torch.tensor([[1.0, 0.02]])
    assert knn_accuracy(train, train_y, query, torch.tensor([0]), 2, k=5, temperature=0.07)["top1"] == 100.0
    assert knn_accuracy(train, train_y, query, torch.tensor([1]), 2, k=5, temperature=100.0)["top1"] == 100.0


def test_vcop_feature_size_of_r3d_at_paper_size():
    from avcl.models.backbones import build_backbone

    net = build_backbone("r3d").eval()
    with torch.no_grad():
        conv5 = net.forward_features(torch.zeros(1, 3, 16, 112, 112), ("conv5",))["conv5"]
    assert vcop_features(conv5).shape == (1, 9216)


class _ToyNet(nn.Module):
    """Two feature channels (one per input colour); the class score reads channel 0 in one region of
    frame 2 only."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv3d(2, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1, 1))
        self.mask = torch.zeros(1, 1, 4, 8, 8)
        self.mask[..., 2, 5:7, 1:3] = 1.0  # frame 2, rows 5-6, columns 1-2

    def forward(self, x):
        maps = torch.relu(self.features(x))
        score = (maps[:, :1] * self.mask).sum(dim=(1, 2, 3, 4))
        return torch.stack([score, -score], dim=1)


def test_grad_cam_finds_the_region_the_answer_depends_on():
    torch.manual_seed(0)
    net = _ToyNet()
    clip = 0.1 * torch.rand(2, 2, 4, 8, 8)
    clip[:, 0, :, 5:7, 1:3] += 1.0  # the evidence: colour 0 where the score looks, in every frame
    clip[:, 1, :, 1:3, 5:7] += 2.0  # a brighter distractor in the other colour, which the score ignores
    cam, target = grad_cam(net, net.features, clip, target=torch.tensor([0, 0]))
    assert cam.shape == (2, 4, 8, 8) and target.tolist() == [0, 0]
    assert float(cam.min()) >= 0.0 and float(cam.max()) == pytest.approx(1.0)
    for b in range(2):
        t, rest = divmod(int(cam[b].argmax()), 64)
        y, x = divmod(rest, 8)
        assert t == 2 and 5 <= y <= 6 and 1 <= x <= 2
        assert float(cam[b, :, 1:3, 5:7].max()) < 0.2  # the distractor is not highlighted
    frames = (clip[0, 0] * 255).clamp(0, 255).to(torch.uint8)[..., None].expand(-1, -1, -1, 3)
    assert overlay(frames, cam[0]).shape == (4, 8, 8, 3)
