"""The comparison methods of the paper's Table 4: SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, IIC.

Tiny r3d encoders (width 0.125) on random clips (4 frames of 16x16) and spectrograms (16x16).
The distributed test launches one real ``torchrun`` (2 processes, gloo) that trains every method for
a few steps; see ``tests/ddp/worker_methods.py`` for why BatchNorm runs in eval mode there.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ddp.harness import run_ddp
from ddp.worker_methods import METHOD_NAMES, QUEUE, STEPS, VIDEO_ONLY, global_batch, run_method, tiny_config

from avcl.errors import UserError
from avcl.losses import info_nce_cross_modal, info_nce_cross_modal_extra, info_nce_queue
from avcl.methods import METHODS, build_method
from avcl.methods.iic import break_temporal_order, intra_negative_frames

N_PER_RANK, WORLD = 4, 2
MOMENTUM_COPY = {"moco": "key", "byol": "target"}


def build(name: str, seed: int = 0, **method_options):
    torch.manual_seed(seed)
    return build_method(tiny_config(name, **method_options))


def test_registry_holds_every_method_and_evaluates_concatenated_features():
    batch = global_batch(3, 0)
    for name in METHOD_NAMES:
        method = build(name)
        assert METHODS[name] is type(method) and method.name == name
        assert not method.supervised and method.uses_video and method.uses_audio == (name not in VIDEO_ONLY)
        method.eval()
        with torch.no_grad():
            if name in VIDEO_ONLY:
                assert method.embed(batch["video"], None, "video").shape == (3, method.embed_dim("video")) == (3, 64)
                continue
            features = method.embed(batch["video"], batch["audio"])
        assert features.shape == (3, 2 * method.feature_dim) == (3, 128)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_loss_is_finite_and_decreases_on_a_fixed_batch(name):
    # MoCo: the queue (8 keys) soon holds only this batch's own older keys; a key encoder that follows
    # faster and a sharper temperature let a dozen steps show the learning
    options = {"moco_momentum": 0.9, "temperature": 0.2} if name == "moco" else {}
    method = build(name, **options)
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    batch = global_batch(4, 0)
    losses = []
    for _ in range(12):
        out = method(batch)
        assert all(torch.isfinite(v).all() for v in out.values())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        method.on_step_end()
        losses.append(out["loss"].item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05 * max(1.0, abs(first)), losses


def test_barlow_reduce_mean_divides_the_summed_loss_by_the_projector_width():
    batch = global_batch(4, 0)
    losses = {}
    for reduce in ("sum", "mean"):
        method = build("barlow", barlow_reduce=reduce)
        method.train()
        losses[reduce] = method(batch)["loss"].item()
    assert losses["mean"] == pytest.approx(losses["sum"] / 32, rel=1e-5)  # the tiny projector: 32 wide


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_gradients_reach_both_encoders_and_not_the_momentum_copies(name):
    method = build(name)
    method.train()
    method(global_batch(4, 0))["loss"].backward()
    for encoder in (method.video_encoder, method.audio_encoder):
        if encoder is None:  # a video-only method has no audio encoder
            assert name in VIDEO_ONLY
            continue
        params = list(encoder.parameters())
        assert all(p.grad is not None for p in params)
        assert sum(p.grad.abs().sum() for p in params) > 0
    if name in MOMENTUM_COPY:
        copy = getattr(method, MOMENTUM_COPY[name])
        assert all(not p.requires_grad and p.grad is None for p in copy.parameters())
        # deep copies: no tensor is shared with the online modules
        online = {id(p) for n, p in method.named_parameters() if not n.startswith(MOMENTUM_COPY[name] + ".")}
        assert not online & {id(p) for p in copy.parameters()}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_declared_evaluation_modules_are_those_the_features_depend_on(name):
    """``eval_modules(modality)`` (what fine-tuning trains) holds exactly the parameters that get a
    gradient from ``embed`` for that modality."""
    method = build(name).eval()
    batch = global_batch(2, 0)
    for modality in ("video",) if name in VIDEO_ONLY else ("video", "audio", "both"):
        method.zero_grad(set_to_none=True)
        method.embed(batch["video"], batch["audio"], modality).sum().backward()
        reached = {n for n, p in method.named_parameters() if p.grad is not None}
        declared = {id(p) for m in method.eval_modules(modality) for p in m.parameters()}
        assert reached == {n for n, p in method.named_parameters() if id(p) in declared}, modality


@pytest.mark.parametrize("name", sorted(MOMENTUM_COPY))
def test_momentum_copy_moves_toward_the_online_weights(name):
    method = build(name)
    method.train()
    copy = getattr(method, MOMENTUM_COPY[name])
    online = [p for n, p in method.named_parameters() if n.split(".")[0] in copy]
    before = [p.detach().clone() for p in copy.parameters()]
    assert all(torch.equal(t, o) for t, o in zip(before, online))  # starts as an exact copy
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    method(global_batch(4, 0))["loss"].backward()
    optimizer.step()
    method.on_step_end()
    m = getattr(method.cfg.method, f"{name}_momentum")
    for t, t0, o in zip(copy.parameters(), before, online):
        torch.testing.assert_close(t, m * t0 + (1 - m) * o.detach())
    gap = lambda ts: sum((a - o).pow(2).sum() for a, o in zip(ts, online))  # noqa: E731
    assert 0 < gap(list(copy.parameters())) < gap(before)


def test_momentum_copy_of_a_shared_encoder_stays_shared():
    torch.manual_seed(0)
    cfg = tiny_config("byol")
    cfg.model.shared = True
    method = build_method(cfg)
    assert method.audio_encoder.backbone is method.video_encoder
    assert method.target.audio_encoder.backbone is method.target.video_encoder
    method(global_batch(2, 0))["loss"].backward()
    method.on_step_end()


def test_moco_queue_is_a_checkpointed_buffer_filled_with_the_global_keys():
    method = build("moco")
    state = method.state_dict()
    assert {"queue_v", "queue_a", "queue_ptr"} <= set(state)
    assert state["queue_v"].shape == state["queue_a"].shape == (8, 16)
    start = method.queue_a.clone()
    batch = global_batch(3, 0)
    method.train()
    method(batch)
    with torch.no_grad():
        k = method.key
        keys_a = F.normalize(k.audio_proj(k.audio_encoder(batch["audio"])), dim=1)
    assert int(method.queue_ptr) == 3
    torch.testing.assert_close(method.queue_a[:3], keys_a)
    assert torch.equal(method.queue_a[3:], start[3:])
    method(global_batch(3, 1))
    method(global_batch(3, 2))  # 9 keys into 8 rows: the oldest row is overwritten, the pointer wraps
    assert int(method.queue_ptr) == 1

    method.eval()  # evaluation forwards leave the queue alone
    queue = method.queue_v.clone()
    method(batch)
    assert torch.equal(method.queue_v, queue) and int(method.queue_ptr) == 1

    restored = build("moco", seed=1)
    assert not torch.equal(restored.queue_v, method.queue_v)
    restored.load_state_dict(method.state_dict())
    for key in ("queue_v", "queue_a", "queue_ptr"):
        assert torch.equal(getattr(restored, key), getattr(method, key))

    method.train()
    with pytest.raises(UserError, match="moco_queue"):
        method(global_batch(9, 0))


def test_info_nce_queue_matches_the_formula():
    torch.manual_seed(0)
    q, k, queue, t = torch.randn(3, 5), torch.randn(3, 5), torch.randn(4, 5), 0.2
    cos = lambda x, y: F.cosine_similarity(x, y, dim=-1) / t  # noqa: E731
    expected = torch.stack(
        [
            -cos(q[i], k[i]) + torch.logsumexp(torch.cat([cos(q[i], k[i])[None], cos(q[i][None], queue)]), 0)
            for i in range(3)
        ]
    ).mean()
    torch.testing.assert_close(info_nce_queue(q, k, queue, t), expected)
    # at a huge temperature every logit is 0: log(1 + K)
    assert info_nce_queue(q, k, queue, 1e6).item() == pytest.approx(math.log(5), rel=1e-5)


def test_info_nce_with_extra_negatives_adds_them_to_both_anchors_of_their_video():
    torch.manual_seed(0)
    v, a, extra, t = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 2, 6), 0.5
    plain = info_nce_cross_modal(v, a, t)
    assert torch.equal(info_nce_cross_modal_extra(v, a, None, t), plain)
    n = F.normalize
    vn, an, en = n(v, dim=1), n(a, dim=1), n(extra, dim=2)

    def direction(x, y):
        total = 0.0
        for i in range(4):
            others = torch.cat([y @ x[i], torch.cat([x[:i], x[i + 1 :]]) @ x[i], en[i] @ x[i]]) / t
            total = total - (y[i] @ x[i]) / t + torch.logsumexp(others, 0)
        return total / 4

    with_extra = info_nce_cross_modal_extra(v, a, extra, t)
    torch.testing.assert_close(with_extra, direction(vn, an) + direction(an, vn))
    assert with_extra > plain
    # (B, D) is one extra negative per video
    torch.testing.assert_close(
        info_nce_cross_modal_extra(v, a, extra[:, 0], t), info_nce_cross_modal_extra(v, a, extra[:, :1], t)
    )


def test_iic_intra_negatives_break_the_temporal_order_deterministically_per_video():
    video = torch.arange(2 * 3 * 6 * 2 * 2, dtype=torch.float32).view(2, 3, 6, 2, 2)  # every frame differs
    index = torch.tensor([7, 11])
    frames = intra_negative_frames(index, 6, ("repeat", "shuffle"), seed=0, step=0)
    assert frames.shape == (2, 2, 6)
    broken = break_temporal_order(video, frames)
    assert broken.shape == (2, 2, 3, 6, 2, 2)
    for b in range(2):
        repeat, shuffle = broken[b, 0], broken[b, 1]
        t = int(frames[b, 0, 0])
        assert torch.equal(repeat, video[b, :, t : t + 1].expand(-1, 6, -1, -1))  # one frame, six times
        assert sorted(frames[b, 1].tolist()) == list(range(6)) and frames[b, 1].tolist() != list(range(6))
        assert torch.equal(shuffle, video[b][:, frames[b, 1]])
        assert not torch.equal(shuffle, video[b])
    # a sample's negative depends on its index, not its position in the batch (nor the rank)
    swapped = intra_negative_frames(index.flip(0), 6, ("repeat", "shuffle"), seed=0, step=0)
    assert torch.equal(swapped, frames.flip(0))
    assert not torch.equal(intra_negative_frames(index, 6, ("shuffle",), seed=0, step=1), frames[:, 1:])
    # two frames can still be shuffled out of order: the only other permutation
    assert intra_negative_frames(torch.arange(5), 2, ("shuffle",)).squeeze(1).tolist() == [[1, 0]] * 5
    with pytest.raises(UserError, match="clip_len"):
        intra_negative_frames(index, 1, ("shuffle",))


@pytest.mark.parametrize("intra, k", [("repeat", 1), ("shuffle", 1), ("both", 2)])
def test_iic_loss_contrasts_each_video_with_its_intra_negatives(intra, k):
    method = build("iic", iic_intra=intra)
    method.eval()
    batch = global_batch(4, 0)
    with torch.no_grad():
        intra_clips = method.intra_negatives(batch)
        assert intra_clips.shape == (4, k, 3, 4, 16, 16)
        loss = method(batch)["loss"]
        z_v = method.video_proj(method.video_encoder(batch["video"]))
        z_a = method.audio_proj(method.audio_encoder(batch["audio"]))
        z_i = method.video_proj(method.video_encoder(intra_clips.flatten(0, 1))).view(4, k, -1)
    t = method.cfg.method.temperature
    torch.testing.assert_close(loss, 0.5 * info_nce_cross_modal_extra(z_v, z_a, z_i, t))
    assert loss > 0.5 * info_nce_cross_modal(z_v, z_a, t)


# -- 2 processes x N samples == 1 process x 2N ---------------------------------------------------
@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_ddp("ddp.worker_methods", "--samples-per-rank", str(N_PER_RANK), nproc=WORLD)


@pytest.mark.distributed
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_two_ranks_train_as_one_process_with_the_global_batch(ranks, name):
    """Per step: the ranks' losses average to the reference, and the DDP-averaged gradients of every
    parameter equal the reference gradients; after the last step every rank's state (weights,
    momentum copies, MoCo's queues and pointer, IIC's step) equals the reference state.
    BatchNorm runs in eval mode in both (see ``tests/ddp/worker_methods.py``)."""
    ref = run_method(name, N_PER_RANK * WORLD, slice(None))
    for step in range(STEPS):
        losses = torch.stack([r[name]["steps"][step]["loss"] for r in ranks])
        torch.testing.assert_close(losses.mean(), ref["steps"][step]["loss"], rtol=1e-5, atol=1e-6)
        ref_grads = ref["steps"][step]["grads"]
        assert any(k.startswith("video_encoder.") for k in ref_grads)
        assert any(k.startswith("audio_encoder.") for k in ref_grads) == (name not in VIDEO_ONLY)
        # float32 sums in another order: an absolute error relative to the gradients' scale (Barlow's
        # are large, and its last projector bias has a zero gradient, as standardisation removes it)
        atol = 1e-6 + 1e-5 * max(float(g.abs().max()) for g in ref_grads.values())
        for r in ranks:
            grads = r[name]["steps"][step]["grads"]
            assert grads.keys() == ref_grads.keys()
            for key, g in ref_grads.items():
                torch.testing.assert_close(
                    grads[key], g, rtol=1e-4, atol=atol, msg=lambda m: f"{name} step {step} {key}: {m}"
                )
    for r in ranks:
        state = r[name]["state"]
        assert state.keys() == ref["state"].keys()
        for key, value in ref["state"].items():
            torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name} {key}: {m}")
    if name == "moco":  # the global keys of every step went into the queue
        assert int(ref["state"]["queue_ptr"]) == (STEPS * N_PER_RANK * WORLD) % QUEUE != 0
