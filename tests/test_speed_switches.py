"""Every speed switch of the training loop changes how fast a step runs, never what it computes.

On a fixed batch of a tiny AVCL (1/8 width, 4x32x32 clips), each switch on and off gives the same loss
on the CPU: ``train.amp`` (auto is full precision off CUDA; bf16's numerics are checked against fp32
with oneDNN off, and bf16/fp16 runs are refused on the CPU), ``train.channels_last``,
``data.normalize_on_device``, the loader switches (workers, persistent workers, prefetching, pinned
memory) and ``train.compile``. The compile test runs only with ``AVCL_SLOW_TESTS=1``: inductor's C++
code generation takes more than a minute on two cores.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import replace

import pytest
import torch
from conftest import ROOT, TINY
from torch.utils.data import default_collate

from avcl.config import ConfigError, load_config
from avcl.data.datasets import PreparedDataset, build_loader
from avcl.data.transforms import to_model_input
from avcl.engine.setup import autocast
from avcl.errors import UserError
from avcl.methods import build_method

CPU = torch.device("cpu")
BATCH = 4


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "configs" / "demo_cpu.yaml", TINY)


@pytest.fixture(scope="module")
def batch(cfg) -> dict:
    """A fixed uint8 batch as the loader ships it: video (4, 3, 4, 32, 32) uint8, audio (4, 1, 28, 28)."""
    g = torch.Generator().manual_seed(0)
    return {
        "video": torch.randint(
            0,
            256,
            (BATCH, 3, cfg.data.clip_len, cfg.data.crop_size, cfg.data.crop_size),
            dtype=torch.uint8,
            generator=g,
        ),
        "audio": torch.randn(BATCH, 1, cfg.data.audio_crop, cfg.data.audio_crop, generator=g),
        "label": torch.arange(BATCH),
        "index": torch.arange(BATCH),
    }


def method_of(cfg):
    torch.manual_seed(0)
    return build_method(cfg).train()


def loss_and_grads(method, batch: dict, amp: str = "off") -> tuple[torch.Tensor, list[torch.Tensor]]:
    method.zero_grad(set_to_none=True)
    with autocast(CPU, amp):
        loss = method(batch)["loss"]
    loss.backward()
    # a module outside the loss's path (AMFM when the losses are on projector outputs) has no gradient: zeros
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in method.parameters()]
    return loss.detach(), grads


def assert_grads_close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float) -> None:
    """Each parameter's gradient within ``rel`` of the reference, in norm: a different summation order
    moves single elements of a large gradient by more than any element-wise tolerance would say."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x - y).norm() <= rel * y.norm() + 1e-12, f"relative error {((x - y).norm() / y.norm()).item():.2e}"


def test_amp_auto_is_bf16_on_cuda_and_full_precision_on_cpu():
    with warnings.catch_warnings():  # constructing a CUDA autocast without CUDA warns that it is disabled
        warnings.simplefilter("ignore")
        cuda = autocast(torch.device("cuda"), "auto")
        cuda_fp16 = autocast(torch.device("cuda"), "fp16")
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16 and cuda.device == "cuda"
    assert cuda_fp16.fast_dtype == torch.float16
    assert not isinstance(autocast(CPU, "auto"), torch.autocast)
    assert not isinstance(autocast(torch.device("cuda"), "off"), torch.autocast)


def test_amp_auto_and_off_give_identical_loss_and_gradients_on_cpu(cfg, batch):
    inputs = to_model_input(batch, cfg.data, CPU)
    loss_off, grads_off = loss_and_grads(method_of(cfg), inputs, "off")
    loss_auto, grads_auto = loss_and_grads(method_of(cfg), inputs, "auto")
    assert torch.equal(loss_off, loss_auto)
    assert all(torch.equal(a, b) for a, b in zip(grads_off, grads_auto))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_is_refused_off_cuda_with_a_clear_error(amp):
    # oneDNN's bf16 conv3d gives garbage weight gradients on some CPUs (torch 2.14, AVX-512 bf16)
    with pytest.raises(UserError, match=f"train.amp={amp} needs a CUDA device"):
        autocast(CPU, amp)
    with pytest.raises(ConfigError, match=f"train.amp={amp} with train.device=cpu"):
        load_config(None, ["train.device=cpu", f"train.amp={amp}"])
    load_config(None, ["train.device=auto", f"train.amp={amp}"])  # may be CUDA: decided when the run starts


BF16_UNIT_ROUNDOFF = 2.0**-8  # 8 significant bits (7 stored + the implicit one)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_bf16_autocast_gradients_are_as_close_to_fp32_as_bf16_rounding_allows(cfg, batch):
    """What ``train.amp=bf16`` computes on a GPU, checked for its numerics with ATen's reference CPU
    kernels: oneDNN is disabled, as its bf16 conv3d is wrong on some CPUs and right on others.

    The tolerance comes from bf16's precision, scaled by how sensitive this batch's gradient is:
    rounding every input and weight once to bf16 (a relative change of at most 2^-8, the least any
    bf16 computation incurs) and computing in fp32 moves the gradient by 12-19% in norm for a batch of
    4 (BatchNorm statistics over 4 clips and AVCL's cross-correlation over 4 samples amplify small
    relative changes about 50-fold). Autocast also rounds each layer's activations, so its error may be
    a few times that of the single rounding: 3x is allowed (1.3-1.4x measured). A wrong kernel gives
    errors of order one or non-finite values. The loss, computed in fp32 from bf16 features, stays
    within 4 units of roundoff.
    """
    inputs = to_model_input(batch, cfg.data, CPU)
    with torch.backends.mkldnn.flags(enabled=False):
        loss_fp32, grads_fp32 = loss_and_grads(method_of(cfg), inputs)
        rounded = method_of(cfg)
        with torch.no_grad():
            for p in rounded.parameters():
                p.copy_(p.bfloat16().float())
        _, grads_rounded = loss_and_grads(
            rounded, {k: v.bfloat16().float() if v.is_floating_point() else v for k, v in inputs.items()}
        )
        method = method_of(cfg)
        method.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_bf16 = method(inputs)["loss"]
        loss_bf16.backward()
    grads_bf16 = [torch.zeros_like(p) if p.grad is None else p.grad for p in method.parameters()]
    assert loss_bf16.dtype == torch.float32  # the losses run in fp32 under autocast
    torch.testing.assert_close(loss_bf16.detach(), loss_fp32, rtol=4 * BF16_UNIT_ROUNDOFF, atol=0.0)
    assert all(torch.isfinite(g).all() for g in grads_bf16)

    def error(grads):
        return (torch.cat([g.flatten() for g in grads]) - torch.cat([g.flatten() for g in grads_fp32])).norm()

    reference = torch.cat([g.flatten() for g in grads_fp32]).norm()
    rounding = error(grads_rounded) / reference
    assert 0 < rounding < 0.5, f"a single bf16 rounding moves the gradient by {rounding:.2e}"
    assert error(grads_bf16) / reference <= 3 * rounding, (
        f"bf16 autocast: relative gradient error {error(grads_bf16) / reference:.2e}, single rounding {rounding:.2e}"
    )


@pytest.mark.parametrize("weights_too", [True, False], ids=["weights_and_clip", "clip_only"])
def test_channels_last_3d_gives_the_same_loss_and_gradients(cfg, batch, weights_too):
    plain = method_of(cfg)
    loss, grads = loss_and_grads(plain, to_model_input(batch, cfg.data, CPU))
    # avcl pretrain converts the weights on CUDA; on the CPU the trainer converts the clip alone
    last = copy.deepcopy(plain)
    if weights_too:
        last = last.to(memory_format=torch.channels_last_3d)
    inputs = to_model_input(batch, cfg.data, CPU, channels_last=True)
    assert inputs["video"].is_contiguous(memory_format=torch.channels_last_3d)
    loss_last, grads_last = loss_and_grads(last, inputs)
    torch.testing.assert_close(loss_last, loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(grads_last, grads, rel=1e-4)


def test_normalize_on_device_gives_the_same_model_input(cfg, tiny_cache):
    on_device = PreparedDataset(tiny_cache, "train", replace(cfg.data, normalize_on_device=True))
    in_dataset = PreparedDataset(tiny_cache, "train", replace(cfg.data, normalize_on_device=False))
    keys = [(i, 1000 + i) for i in range(BATCH)]  # (index, sample seed): the same crops and flips in both
    uint8 = default_collate([on_device[k] for k in keys])
    floats = default_collate([in_dataset[k] for k in keys])
    assert uint8["video"].dtype == torch.uint8 and floats["video"].dtype == torch.float32
    a, b = to_model_input(uint8, cfg.data, CPU), to_model_input(floats, cfg.data, CPU)
    assert a["video"].dtype == b["video"].dtype == torch.float32
    torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=1e-6)
    for key in ("audio", "label", "index"):
        assert torch.equal(a[key], b[key])


def test_loader_switches_do_not_change_batches(cfg, tiny_cache):
    def epochs_of(data_cfg) -> list[dict]:
        dataset = PreparedDataset(tiny_cache, "train", data_cfg)
        loader = build_loader(dataset, data_cfg, BATCH, shuffle=True, seed=0, drop_last=True)
        assert loader.pin_memory is False  # pinned memory only takes effect for a CUDA device
        out = []
        for epoch in range(2):  # the second epoch reuses persistent workers
            loader.sampler.set_epoch(epoch)
            out.extend(loader)
        return out

    plain = epochs_of(replace(cfg.data, num_workers=0, pin_memory=False))
    fast = epochs_of(replace(cfg.data, num_workers=2, pin_memory=True, persistent_workers=True, prefetch_factor=2))
    assert len(plain) == len(fast) > 2
    for p, f in zip(plain, fast):
        assert p.keys() == f.keys()
        assert all(torch.equal(p[k], f[k]) for k in p)


def test_pin_memory_is_requested_for_cuda_loaders_only(cfg, tiny_cache):
    dataset = PreparedDataset(tiny_cache, "train", cfg.data)
    pinned = replace(cfg.data, pin_memory=True)
    assert build_loader(dataset, pinned, BATCH, shuffle=False, seed=0, device="cuda").pin_memory is True
    assert build_loader(dataset, pinned, BATCH, shuffle=False, seed=0, device="cpu").pin_memory is False
    assert (
        build_loader(dataset, replace(pinned, pin_memory=False), BATCH, shuffle=False, seed=0, device="cuda").pin_memory
        is False
    )


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("AVCL_SLOW_TESTS") != "1",
    reason="torch.compile takes more than a minute on two cores; set AVCL_SLOW_TESTS=1",
)
def test_torch_compile_gives_the_same_loss_and_gradients(cfg, batch):
    inputs = to_model_input(batch, cfg.data, CPU)
    eager = method_of(cfg)
    compiled_method = copy.deepcopy(eager)
    loss, grads = loss_and_grads(eager, inputs)
    compiled = torch.compile(compiled_method)
    compiled_method.zero_grad(set_to_none=True)
    loss_c = compiled(inputs)["loss"]
    loss_c.backward()
    torch.testing.assert_close(loss_c.detach(), loss, rtol=1e-4, atol=1e-4)
    assert_grads_close([p.grad for p in compiled_method.parameters()], grads, rel=1e-3)
