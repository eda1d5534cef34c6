"""AVCL (paper section 2): AMFM fusion, CGRA alignment and SelfCL contrast over two encoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avcl.config import Config, choice
from avcl.losses import REDUCTIONS, cross_correlation_loss, info_nce_cross_modal
from avcl.methods.base import Method
from avcl.models.fusion import AMFM, GATES
from avcl.models.heads import mlp

# Which encoder outputs each CGRA setting aligns (paper Table 2). Conv feature maps are globally
# average-pooled to vectors before the cross-correlation (METHOD.md section 3).
CGRA_LAYERS = {
    "conv3": ("conv3",),
    "conv4": ("conv4",),
    "conv5": ("conv5",),
    "pool": ("pool",),
    "conv5+pool": ("conv5", "pool"),
}
LOSS_ON = ("fused", "encoder", "projector")  # the features CGRA and SelfCL compare (AVCL's docstring)
# How the terms' weights are set: "fixed" (lambda_cor, lambda_self as given) or "gradnorm" (rescaled every
# step so that the terms' gradients at the shared features stand in the ratio lambda_cor : lambda_self).
BALANCES = ("fixed", "gradnorm")
NORM_MOMENTUM = 0.9  # of the running mean of each term's gradient norm under balance=gradnorm
# The largest factor balance=gradnorm multiplies a lambda by: a term whose gradient has all but vanished
# (a saturated loss) is not scaled up without bound.
MAX_SCALE = 100.0


@dataclass
class AVCLOptions:
    """AVCL's keys of the ``method`` section (METHOD.md section 3); ``method.cgra_lambda``,
    ``method.temperature`` and the projector sizes are shared keys."""

    amfm: bool = True
    gate: str = choice("sigmoid", GATES)  # sigmoid (default) | relu (the paper's text, read literally)
    cgra: bool = True
    cgra_layer: str = choice("pool", CGRA_LAYERS)
    standardize: bool = True  # zero-mean, unit-variance features before Eq. 6
    cgra_reduce: str = choice("mean", REDUCTIONS)  # sum (Eq. 5 as printed, grows with D) | mean (divided by D)
    loss_on: str = choice("projector", LOSS_ON)  # fused (AMFM outputs, the paper) | encoder | projector
    selfcl: bool = True
    lambda_cor: float = 0.9  # as the paper; with CGRA averaged, better than 0.5 / 0.5 (docs/results.md, Table 3)
    lambda_self: float = 0.1  # as the paper
    balance: str = choice("fixed", BALANCES)  # fixed (the lambdas as given) | gradnorm (see AVCL)


def _global_pool(x: Tensor) -> Tensor:
    return x.flatten(2).mean(dim=2) if x.dim() > 2 else x


class AVCL(Method):
    """``L = lambda_cor * L_cor + lambda_self * L_self`` (Eq. 11).

    CGRA (Eq. 5-6) aligns the chosen layer across modalities; SelfCL (Eq. 7-10) contrasts each video
    with its own audio against the other videos and audios of the (global) batch. ``method.loss_on``
    says which pool-final features the two losses compare:

    - ``fused``: the AMFM outputs ``g * v`` and ``g * a`` (Eq. 1-4), as the paper. One gate computed from
      the pair multiplies both modalities, so the gate alone can make a pair match (a shortcut that
      :mod:`avcl.methods.diagnostics` measures).
    - ``encoder``: the encoders' own features ``v`` and ``a``.
    - ``projector``: ``p_v(v)`` and ``p_a(a)``, one MLP projector per modality (``proj_hidden``,
      ``proj_dim``), dropped after pretraining.

    With ``encoder`` or ``projector`` AMFM is not in the pretraining loss path: it gets no gradient in
    pretraining and is learned with the classifier when fine-tuning (the linear probe reads it as
    initialised).

    ``method.balance=gradnorm`` sets the weights from the gradients instead of taking the lambdas as
    they are: each training step measures the norm of each (unweighted) term's gradient at the
    features both terms share (the encoders' outputs of the layers the losses read), keeps a running
    mean of it (momentum 0.9, in the buffer ``grad_norm_avg``, so it is saved, resumed and the same
    on every DDP rank) and weights term ``i`` by ``lambda_i * min(mean_j(n_j) / n_i, 100)``: the
    weighted gradients then stand in the ratio ``lambda_cor : lambda_self`` whatever the terms' scales
    (CGRA summed over D dimensions or averaged), and a term whose gradient has all but vanished (a
    saturated loss) is scaled up by at most 100. The weights in use are logged as ``weight_<term>``.
    """

    name = "avcl"
    options = AVCLOptions
    # Runs saved before these options existed compared the AMFM outputs and summed Eq. 5.
    saved_fallbacks = {"loss_on": "fused", "cgra_reduce": "sum"}

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        self.amfm = AMFM(self.feature_dim, self.audio_encoder.out_dim, gate=m.gate) if m.amfm else None
        self.cgra_layers = CGRA_LAYERS[m.cgra_layer] if m.cgra else ()
        self.loss_on = m.loss_on
        if m.loss_on == "projector":
            self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim)
            self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim)
        # AMFM outside the loss path gets no gradient in pretraining: DDP must not wait for it
        self.find_unused_parameters = m.amfm and m.loss_on != "fused"
        self.balance = m.balance == "gradnorm" and m.cgra and m.selfcl
        if self.balance:  # per term (cor, self); 0: not measured yet
            self.register_buffer("grad_norm_avg", torch.zeros(2))

    def fuse(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return self.amfm(v, a) if self.amfm is not None else (v, a)

    def loss_features(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """The pool-final pair the losses compare, from the encoders' features ``(B, D)``."""
        if self.loss_on == "fused":
            return self.fuse(v, a)
        if self.loss_on == "projector":
            return self.video_proj(v), self.audio_proj(a)
        return v, a

    def _terms(self, batch: dict[str, Tensor]) -> tuple[dict[str, tuple[float, Tensor]], list[Tensor]]:
        """The terms that are on, ``{"cor": (lambda_cor, L_cor), "self": (lambda_self, L_self)}``, and
        the encoder outputs they are computed from (where ``balance=gradnorm`` measures gradients)."""
        m = self.cfg.method
        layers = tuple(dict.fromkeys(("pool",) + self.cgra_layers))
        feats_v = self.video_encoder.forward_features(batch["video"], layers)
        feats_a = self.audio_encoder.forward_features(batch["audio"], layers)
        z_v, z_a = self.loss_features(feats_v["pool"], feats_a["pool"])
        terms: dict[str, tuple[float, Tensor]] = {}
        if self.cgra_layers:
            l_cor = z_v.new_zeros((), dtype=torch.float32)
            for layer in self.cgra_layers:
                x_v, x_a = (
                    (z_v, z_a) if layer == "pool" else (_global_pool(feats_v[layer]), _global_pool(feats_a[layer]))
                )
                l_cor = l_cor + cross_correlation_loss(
                    x_v.float(), x_a.float(), lambd=m.cgra_lambda, standardize=m.standardize, reduction=m.cgra_reduce
                )
            terms["cor"] = (m.lambda_cor, l_cor)
        if m.selfcl:
            terms["self"] = (m.lambda_self, info_nce_cross_modal(z_v.float(), z_a.float(), temperature=m.temperature))
        return terms, [f for feats in (feats_v, feats_a) for f in feats.values()]

    def _weighted(self, terms: dict[str, tuple[float, Tensor]]) -> dict[str, tuple[float | Tensor, Tensor]]:
        """``terms`` with the weights in use: the lambdas, rescaled by the running gradient norms under
        ``balance=gradnorm`` once they are measured."""
        if not self.balance:
            return terms
        avg = self.grad_norm_avg  # no host sync here: the training step must not wait for the device
        balanced = (avg.mean() / avg.clamp_min(torch.finfo(avg.dtype).tiny)).clamp(max=MAX_SCALE)
        scale = torch.where((avg > 0).all(), balanced, torch.ones_like(avg))
        return {name: (weight * s, loss) for (name, (weight, loss)), s in zip(terms.items(), scale)}

    @torch.no_grad()
    def _update_norms(self, terms: dict[str, tuple[float, Tensor]], anchors: list[Tensor]) -> None:
        """Add this step's gradient norm of each unweighted term at ``anchors`` to ``grad_norm_avg``."""
        norms = []
        for _, loss in terms.values():
            with torch.enable_grad():
                grads = torch.autograd.grad(loss, anchors, retain_graph=True, allow_unused=True)
            sq = sum((g.float().pow(2).sum() for g in grads if g is not None), loss.new_zeros(()))
            norms.append(sq.sqrt())
        now = torch.stack(norms).to(self.grad_norm_avg)
        avg = self.grad_norm_avg
        new = torch.where(avg > 0, NORM_MOMENTUM * avg + (1 - NORM_MOMENTUM) * now, now)
        avg.copy_(torch.where(torch.isfinite(now) & (now > 0), new, avg))

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, tuple[float | Tensor, Tensor]]:
        """``{"cor": (weight, L_cor), "self": (weight, L_self)}`` for the terms that are on, with the
        weights in use (the lambdas, or as ``balance=gradnorm`` sets them)."""
        return self._weighted(self._terms(batch)[0])

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms, anchors = self._terms(batch)
        if self.balance and self.training and torch.is_grad_enabled():
            self._update_norms(terms, anchors)
        terms = self._weighted(terms)
        out: dict[str, Tensor] = {f"loss_{name}": value.detach() for name, (_, value) in terms.items()}
        if self.balance:
            out.update({f"weight_{name}": weight.detach().float() for name, (weight, _) in terms.items()})
        loss = sum(
            (weight * value for weight, value in terms.values()), batch["video"].new_zeros((), dtype=torch.float32)
        )
        out["loss"] = loss
        return out

    def diagnostics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """Once per epoch on one batch: gradient norms of the weighted terms at the encoders, and the
        gate-only check of that batch (:mod:`avcl.methods.diagnostics`)."""
        from avcl.methods.diagnostics import batch_gate_only, gradient_norms

        out = gradient_norms(self, batch)
        if self.amfm is not None:
            out.update(batch_gate_only(self, batch))
        return out

    def embed(
        self, video: Tensor | None, audio: Tensor | None, modality: str = "both", features: str = "gated"
    ) -> Tensor:
        """Table 4 evaluates AVCL on the AMFM-fused features, concatenated (``features="gated"``);
        ``features="pregate"`` gives the encoders' features, concatenated."""
        if features not in ("gated", "pregate"):
            raise ValueError(f"features must be 'gated' or 'pregate', got {features!r}")
        if modality != "both" or self.amfm is None or features == "pregate":
            return super().embed(video, audio, modality)
        f_v, f_a = self.fuse(self.video_encoder(video), self.audio_encoder(audio))
        return torch.cat([f_v, f_a], dim=1)

    def eval_modules(self, modality: str) -> list[nn.Module]:
        """The encoders, and AMFM for the fused features of both modalities."""
        fused = modality == "both" and self.amfm is not None
        return super().eval_modules(modality) + ([self.amfm] if fused else [])
