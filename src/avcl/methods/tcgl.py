"""TCGL, temporal contrastive graph learning (Liu et al., arXiv 2101.00820 / 2112.03587), video only.

As its authors' release (METHOD.md section 5), without the release's leak by default:

- **Input**: ``batch["tuple"]`` (B, 3, 3, T, H, W), three snippets of T frames in shuffled order, and
  ``batch["order"]`` (B,), the index of the shuffle in ``itertools.permutations(range(3))``
  (``avcl.data.tuples``).
- **STKD** (``tcgl.stkd``): each snippet, and each of its ``tcgl.sets`` frame sets, minus its own
  temporal mean (``avcl.data.transforms.stkd``).
- **Nodes**: one shared backbone encodes the 3 snippets (inter-graph nodes) and the 3 x ``tcgl.sets``
  frame sets (intra-graph nodes). A backbone that needs more frames than a set holds (C3D: 8) sees the
  set tiled along time (1234 -> 12341234), as the release does. Snippets and sets are two forward
  passes of the backbone (BatchNorm sees each kind of input together).
- **Graphs**: per snippet a chain over its frame sets (0-1-2-3); over the snippets, the chain of their
  shuffled positions (0-1, 1-2; ``tcgl.inter_edges=positions``, the same graph for every label) or
  the release's chain of their true temporal order (``true_order``, which tells the order head the
  answer: the middle snippet is the node with two edges). Dense batched GCN layers with GCNConv's
  semantics (self-loops, symmetric normalisation, bias, no activation); one intra GCN shared by the
  three snippets (``tcgl.intra_gcn=shared``) or one per shuffled position (``per_position``, the release).
- **Views**: view 1 is the clean graph; view 2 drops each directed edge with ``tcgl.edge_drop`` and
  masks each feature dimension with ``tcgl.feature_mask``, one mask per sample for all its nodes,
  applied to the backbone features before the GCN.
- **GRACE loss**: a projection D -> D, ELU, D -> D shared by every graph and both views; cosine with
  ``tcgl.temperature``; negatives are the other nodes of the same graph in both views (no other
  sample: nothing is gathered under DDP), symmetrised, mean over nodes (and over the 3 intra graphs).
- **ASOP**: the 3 clean inter-graph node outputs; per position a gate concat(3D) -> D/2 -> ReLU -> D ->
  sigmoid that scales that node; concat -> D -> ReLU -> dropout -> 6 logits; cross-entropy.
- **Loss**: intra + inter + order.

Every random draw (edge drops, feature masks, the ASOP dropout) depends only on ``(train.seed, step,
batch["index"][b])``, so a sample gets the same views whichever rank or batch position it lands in,
and 2 processes x N samples train exactly as 1 process x 2N.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avcl import distributed as dist
from avcl.config import Config, choice
from avcl.data.transforms import stkd
from avcl.data.tuples import PERMUTATIONS, SHORT_VIDEOS, SNIPPETS
from avcl.errors import UserError
from avcl.methods.base import Method

INTER_EDGES = ("positions", "true_order")
INTRA_GCNS = ("shared", "per_position")


@dataclass
class TCGLOptions:
    """TCGL's options (METHOD.md section 5), the ``tcgl`` section: the VCOP tuple, the graphs and their views."""

    gap: int = 8  # frames between consecutive snippets of a tuple (3 x data.clip_len + 2 x gap frames)
    sets: int = 4  # frame sets (intra-graph nodes) per snippet; data.clip_len must be a multiple
    # videos shorter than the tuple: skip (dropped, counted) | loop (frame ids wrap)
    short_videos: str = choice("skip", SHORT_VIDEOS)
    stkd: bool = True  # temporal-mean removal per snippet and per frame set during pretraining
    # positions (0-1, 1-2 of the shuffled order) | true_order (the release: leaks the label)
    inter_edges: str = choice("positions", INTER_EDGES)
    # shared (one GCN for the three snippets) | per_position (the release: one per position)
    intra_gcn: str = choice("shared", INTRA_GCNS)
    edge_drop: float = 0.2  # view 2: probability of dropping each directed edge
    feature_mask: float = 0.1  # view 2: probability of masking each feature dimension (one mask per sample)
    temperature: float = 0.5  # GRACE's tau
    order_dropout: float = 0.5  # dropout of the ASOP classifier


LEAK_WARNING = (
    "tcgl.inter_edges=true_order: the inter-snippet graph connects snippets adjacent in true time, "
    "which gives the order head its answer (the release's behaviour); order accuracy is not a "
    "measure of learning in this mode"
)


def _sample_seed(seed: int, step: int, index: int) -> int:
    return ((seed * 1_000_003 + step) * 1_000_033 + index + 7) % (1 << 63)


def chain_adjacency(n: int) -> Tensor:
    """(n, n) float: the undirected chain 0-1-...-(n-1) as two directed edges per link, no self-loops."""
    a = torch.zeros(n, n)
    i = torch.arange(n - 1)
    a[i, i + 1] = 1.0
    a[i + 1, i] = 1.0
    return a


def true_order_adjacency(order: Tensor) -> Tensor:
    """(B, 3, 3): positions p, q linked when the snippets they hold are adjacent in true time (the release)."""
    perm = torch.tensor(PERMUTATIONS, device=order.device)[order]  # (B, 3): true snippet at each position
    return ((perm[:, :, None] - perm[:, None, :]).abs() == 1).float()


def gcn_normalize(adj: Tensor) -> Tensor:
    """GCNConv's propagation matrix ``D^-1/2 (A + I) D^-1/2`` for dense ``adj`` (..., n, n).

    ``adj[..., t, s] = 1`` for an edge s -> t (t aggregates s); the degree of a node is its in-degree
    plus its self-loop, as PyG's ``gcn_norm`` counts it at the edge targets.
    """
    a = adj + torch.eye(adj.shape[-1], device=adj.device, dtype=adj.dtype)
    d = a.sum(dim=-1).rsqrt()
    return d[..., :, None] * a * d[..., None, :]


class DenseGCN(nn.Module):
    """One GCNConv layer on a batch of small dense graphs: ``(..., n, D), (..., n, n) -> (..., n, D_out)``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.weight)  # PyG's glorot

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return gcn_normalize(adj.to(x.dtype)) @ (x @ self.weight.T) + self.bias


def grace_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """GRACE's node contrastive loss on graphs ``(G, n, d)`` of two views, mean over the G x n nodes.

    For node i of view 1: positive node i of view 2, negatives the other nodes of the same graph in
    both views; symmetrised ``(l(z1, z2) + l(z2, z1)) / 2``.
    """
    h1, h2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    n = h1.shape[-2]
    eye = torch.eye(n, dtype=torch.bool, device=h1.device)

    def semi(a: Tensor, b: Tensor) -> Tensor:
        between = a @ b.transpose(-1, -2) / temperature
        refl = (a @ a.transpose(-1, -2) / temperature).masked_fill(eye, float("-inf"))
        return torch.logsumexp(torch.cat([between, refl], dim=-1), dim=-1) - between.diagonal(dim1=-2, dim2=-1)

    return 0.5 * (semi(h1, h2) + semi(h2, h1)).mean()


class ASOP(nn.Module):
    """Adaptive snippet order prediction: gated snippet features -> logits over the 6 permutations."""

    def __init__(self, dim: int, snippets: int = SNIPPETS, classes: int = len(PERMUTATIONS)):
        super().__init__()
        hidden = max(dim // 2, 1)
        self.gates = nn.ModuleList(
            nn.Sequential(
                nn.Linear(snippets * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim), nn.Sigmoid()
            )
            for _ in range(snippets)
        )
        self.fc1 = nn.Linear(snippets * dim, dim)
        self.fc2 = nn.Linear(dim, classes)

    def forward(self, nodes: Tensor, dropout_mask: Tensor | None = None) -> Tensor:
        """``nodes`` (B, 3, D); ``dropout_mask`` (B, D) already scaled by 1/(1-p), or None (no dropout)."""
        context = nodes.flatten(1)
        gated = torch.cat([nodes[:, p] * gate(context) for p, gate in enumerate(self.gates)], dim=1)
        hidden = F.relu(self.fc1(gated))
        if dropout_mask is not None:
            hidden = hidden * dropout_mask
        return self.fc2(hidden)


class TCGL(Method):
    """TCGL's pretraining objective on VCOP tuples (``sample_mode = "tuple"``); see the module docstring."""

    name = "tcgl"
    uses_audio = False
    sample_mode = "tuple"  # the pretraining dataset: avcl.data.tuples.TupleDataset
    options = TCGLOptions
    options_section = "tcgl"

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        # video only: no audio encoder (DDP would see its parameters unused)
        del self._modules["audio_encoder"]
        self.audio_encoder = None
        t = cfg.tcgl
        if t.sets < 1 or cfg.data.clip_len % t.sets:
            raise UserError(f"tcgl.sets ({t.sets}) must divide data.clip_len ({cfg.data.clip_len})")
        for key in ("edge_drop", "feature_mask", "order_dropout"):
            if not 0.0 <= getattr(t, key) < 1.0:
                raise UserError(f"tcgl.{key} must be in [0, 1) (got {getattr(t, key)})")
        if t.inter_edges not in INTER_EDGES:
            raise UserError(f"tcgl.inter_edges is {t.inter_edges!r}; choose one of {', '.join(INTER_EDGES)}")
        if t.intra_gcn not in INTRA_GCNS:
            raise UserError(f"tcgl.intra_gcn is {t.intra_gcn!r}; choose one of {', '.join(INTRA_GCNS)}")
        d = self.feature_dim
        n_intra = 1 if t.intra_gcn == "shared" else SNIPPETS
        self.intra_gcn = nn.ModuleList(DenseGCN(d, d) for _ in range(n_intra))
        self.inter_gcn = DenseGCN(d, d)
        self.projector = nn.Sequential(nn.Linear(d, d), nn.ELU(), nn.Linear(d, d))
        self.asop = ASOP(d)
        self.register_buffer("view_step", torch.zeros((), dtype=torch.long))
        self.leaks_order = t.inter_edges == "true_order"
        if self.leaks_order and dist.is_main():
            print(f"warning: {LEAK_WARNING}", file=sys.stderr, flush=True)

    # -- the two views --------------------------------------------------------------------------------
    def view_draws(self, index: Tensor) -> dict[str, Tensor]:
        """Per-sample random draws of view 2 and of the ASOP dropout, from ``(train.seed, view_step, index)``:
        ``intra_keep`` (B, 3, k, k), ``inter_keep`` (B, 3, 3) edge-keep masks, ``feature_mask`` (B, D) and
        ``dropout`` (B, D) (scaled by 1/(1-p)), all float on the CPU."""
        t, d, k = self.cfg.tcgl, self.feature_dim, self.cfg.tcgl.sets
        sizes = (SNIPPETS * k * k, SNIPPETS * SNIPPETS, d, d)
        rows = []
        for idx in index.tolist():
            g = torch.Generator().manual_seed(_sample_seed(self.cfg.train.seed, int(self.view_step), int(idx)))
            rows.append(torch.rand(sum(sizes), generator=g))
        u = torch.stack(rows).split(sizes, dim=1)
        b = len(rows)
        keep = 1.0 - t.order_dropout
        return {
            "intra_keep": (u[0] >= t.edge_drop).float().view(b, SNIPPETS, k, k),
            "inter_keep": (u[1] >= t.edge_drop).float().view(b, SNIPPETS, SNIPPETS),
            "feature_mask": (u[2] >= t.feature_mask).float(),
            "dropout": (u[3] < keep).float() / keep,
        }

    def intra(self, x: Tensor, adj: Tensor) -> Tensor:
        """Intra-snippet GCN over ``x`` (B, 3, k, D) with ``adj`` (B, 3, k, k)."""
        if len(self.intra_gcn) == 1:
            return self.intra_gcn[0](x, adj)
        return torch.stack([gcn(x[:, p], adj[:, p]) for p, gcn in enumerate(self.intra_gcn)], dim=1)

    def encode(self, tuples: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, C, T, H, W) -> snippet features (B, 3, D) and frame-set features (B, 3, k, D)."""
        b, s, c, t, h, w = tuples.shape
        k = self.cfg.tcgl.sets
        set_len = t // k
        if self.cfg.tcgl.stkd:
            snippets, sets = stkd(tuples), stkd(tuples, set_len)
        else:
            snippets = sets = tuples
        snippet_features = self.video_encoder(snippets.flatten(0, 1)).view(b, s, -1)
        sets = sets.unflatten(3, (k, set_len)).permute(0, 1, 3, 2, 4, 5, 6).flatten(0, 2)  # (B*3*k, C, set_len, H, W)
        need = int(getattr(self.video_encoder, "min_frames", 1))
        if set_len < need:  # C3D: tile the set along time, 1234 -> 12341234
            sets = sets.repeat(1, 1, math.ceil(need / set_len), 1, 1)
        set_features = self.video_encoder(sets).view(b, s, k, -1)
        return snippet_features, set_features

    def inter_adjacency(self, order: Tensor) -> Tensor:
        """(B, 3, 3) clean inter-snippet graph: the chain of positions, or of true time (``true_order``)."""
        if self.cfg.tcgl.inter_edges == "true_order":
            return true_order_adjacency(order)
        return chain_adjacency(SNIPPETS).to(order.device).expand(order.shape[0], SNIPPETS, SNIPPETS)

    @torch.no_grad()
    def order_logits(self, tuples: Tensor, order: Tensor) -> Tensor:
        """(B, 6) ASOP logits on the clean inter graph, without dropout (``order`` is read only by
        ``true_order`` edges)."""
        snippets, _ = self.encode(tuples)
        return self.asop(self.inter_gcn(snippets.float(), self.inter_adjacency(order)))

    # -- training -------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        tuples, order = batch["tuple"], batch["order"]
        t = self.cfg.tcgl
        b, k = tuples.shape[0], t.sets
        draws = {n: v.to(tuples.device) for n, v in self.view_draws(batch["index"]).items()}
        if self.training:
            self.view_step += 1
        snippets, sets = self.encode(tuples)
        snippets, sets = snippets.float(), sets.float()
        mask = draws["feature_mask"]

        intra_adj = chain_adjacency(k).to(tuples.device).expand(b, SNIPPETS, k, k)
        inter_adj = self.inter_adjacency(order)

        intra1 = self.intra(sets, intra_adj)
        intra2 = self.intra(sets * mask[:, None, None], intra_adj * draws["intra_keep"])
        inter1 = self.inter_gcn(snippets, inter_adj)
        inter2 = self.inter_gcn(snippets * mask[:, None], inter_adj * draws["inter_keep"])

        tau = t.temperature
        loss_intra = grace_loss(self.projector(intra1).flatten(0, 1), self.projector(intra2).flatten(0, 1), tau)
        loss_inter = grace_loss(self.projector(inter1), self.projector(inter2), tau)
        logits = self.asop(inter1, draws["dropout"] if self.training and t.order_dropout > 0 else None)
        loss_order = F.cross_entropy(logits, order)
        acc = 100.0 * (logits.argmax(dim=1) == order).float().mean()
        return {
            "loss": loss_intra + loss_inter + loss_order,
            "intra": loss_intra.detach(),
            "inter": loss_inter.detach(),
            "order": loss_order.detach(),
            "order_acc": acc.detach(),
        }

    # -- evaluation -----------------------------------------------------------------------------------
    def embed(self, video: Tensor | None, audio: Tensor | None, modality: str = "video") -> Tensor:
        if modality != "video":
            raise UserError(f"TCGL learns video features only; evaluate it with eval.modality=video (got {modality!r})")
        return self.video_encoder(video)

    def embed_dim(self, modality: str) -> int:
        return self.feature_dim

    def eval_modules(self, modality: str) -> list[nn.Module]:
        return [self.video_encoder]


@torch.no_grad()
def evaluate_order(
    checkpoint: str, split: str = "val", draws: int = 5, data_root: str | None = None, batch_size: int = 32
) -> dict:
    """Snippet-order accuracy (%) of a TCGL checkpoint on ``draws`` tuples of every video of ``split``
    (eval mode, keys ``(pos, draw)``: the same tuples for every checkpoint). With ``true_order`` edges
    the graph itself carries part of the answer, so the figure then overstates what was learned."""
    from avcl.api import method_from_checkpoint
    from avcl.data.transforms import to_model_input
    from avcl.data.tuples import TupleDataset

    method = method_from_checkpoint(checkpoint)
    if not isinstance(method, TCGL):
        raise UserError(f"{checkpoint}: not a TCGL pretraining checkpoint")
    cfg = method.cfg
    dataset = TupleDataset(data_root or cfg.data.root, split, cfg.data, cfg.tcgl, seed=cfg.train.seed)
    keys = [(pos, 1_000_003 * draw + pos) for draw in range(draws) for pos in range(len(dataset))]
    correct = 0
    for i in range(0, len(keys), batch_size):
        samples = [dataset[k] for k in keys[i : i + batch_size]]
        batch = to_model_input({n: torch.stack([x[n] for x in samples]) for n in ("tuple", "order")}, cfg.data, "cpu")
        logits = method.order_logits(batch["tuple"], batch["order"])
        correct += int((logits.argmax(dim=1) == batch["order"]).sum())
    return {
        "order_acc": 100.0 * correct / len(keys),
        "tuples": len(keys),
        "split": split,
        "inter_edges": cfg.tcgl.inter_edges,
    }
