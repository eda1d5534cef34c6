"""TCGL (METHOD.md section 5): the VCOP tuple sampler, STKD, the dense GCN, the graph views, the GRACE
loss, the leak-free inter-snippet graph and every option; a short pretraining, a linear probe and a
fine-tuning tested at video level through the CLI on the tiny benchmark. The generic tests (loss
decreases, gradients, DDP equivalence) list TCGL in ``tests/test_methods.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, run_cli

from avcl.config import Config, DataConfig
from avcl.data.transforms import stkd, to_model_input
from avcl.data.tuples import PERMUTATIONS, TupleDataset, random_tuple, tuple_frame_ids, tuple_length
from avcl.errors import UserError
from avcl.methods import build_method
from avcl.methods.tcgl import (
    DenseGCN,
    TCGLOptions,
    chain_adjacency,
    gcn_normalize,
    grace_loss,
    true_order_adjacency,
)


def tcgl_config(**tcgl) -> Config:
    cfg = Config()
    cfg.method.name = "tcgl"
    cfg.model.width = 0.125
    cfg.data.clip_len = 4
    for key, value in tcgl.items():
        setattr(cfg.tcgl, key, value)
    return cfg


def tuple_batch(n: int, seed: int = 0, clip_len: int = 4, size: int = 16) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "tuple": torch.randn(n, 3, 3, clip_len, size, size, generator=g),
        "order": torch.arange(n) % 6,
        "index": torch.arange(n) + 10,
    }


# -- the sampler --------------------------------------------------------------------------------------
def test_permutations_are_itertools_order():
    assert PERMUTATIONS == ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    assert tuple_length(16, 8) == 64


def test_tuple_ids_have_the_gaps_and_the_label_is_the_shuffle():
    rng = np.random.default_rng(0)
    labels, starts = [], []
    for _ in range(1200):
        ids, label = random_tuple(100, 16, 8, rng)
        assert ids.shape == (3, 16)
        true = np.empty_like(ids)
        true[list(PERMUTATIONS[label])] = ids  # shuffled position k holds true snippet PERMUTATIONS[label][k]
        assert np.array_equal(true, tuple_frame_ids(int(true[0, 0]), 16, 8, 100))
        assert (np.diff(true, axis=1) == 1).all()  # 16 consecutive frames
        assert (true[1:, 0] - true[:-1, -1] == 9).all()  # 8 frames skipped between snippets
        labels.append(label)
        starts.append(int(true[0, 0]))
    counts = np.bincount(labels, minlength=6)
    assert counts.min() > 150 and counts.max() < 250, counts  # uniform over the 6 orders (200 each)
    assert min(starts) == 0 and max(starts) == 100 - 64  # the start is uniform over the whole video
    assert abs(np.mean(starts) - 18) < 1.5
    with pytest.raises(ValueError):
        tuple_frame_ids(0, 16, 8, 63)
    assert tuple_frame_ids(0, 4, 2, 10, loop=True).tolist() == [[0, 1, 2, 3], [6, 7, 8, 9], [2, 3, 4, 5]]


def test_tuple_dataset_reads_the_frames_of_its_tuple_with_one_crop(tiny_cache):
    from avcl.data.cache import PreparedCache
    from avcl.data.transforms import random_crop_box

    cache = PreparedCache(tiny_cache)
    data = DataConfig(clip_len=4, crop_size=32, hflip=False)
    ds = TupleDataset(cache, "train", data, TCGLOptions(gap=2), seed=0)
    assert ds.short_videos == 0 and "0 of" in ds.report
    for key in [(0, 5), (3, 17), (len(ds) - 1, 2)]:
        sample = ds[key]
        assert sample["tuple"].shape == (3, 3, 4, 32, 32) and sample["tuple"].dtype == torch.uint8
        row = int(ds.rows[key[0]])
        assert int(sample["index"]) == row
        rng = np.random.default_rng(key[1])  # replay the sample's draws
        ids, label = random_tuple(int(cache.entries.num_frames[row]), 4, 2, rng)
        y, x = random_crop_box(*cache.frame_size, 32, rng)
        assert int(sample["order"]) == label
        frames = cache.read_frames(row, ids.reshape(-1)).reshape(3, 4, *cache.frame_size, 3)
        expected = torch.from_numpy(frames[:, :, y : y + 32, x : x + 32]).permute(0, 4, 1, 2, 3)
        assert torch.equal(sample["tuple"], expected)
        assert torch.equal(ds[key]["tuple"], sample["tuple"])  # the key decides everything
    batch = to_model_input({"tuple": sample["tuple"][None]}, data, "cpu")
    assert batch["tuple"].dtype == torch.float32 and batch["tuple"].shape == (1, 3, 3, 4, 32, 32)


def test_short_videos_are_skipped_or_looped_and_counted(tiny_cache):
    from avcl.data.cache import PreparedCache

    cache = PreparedCache(tiny_cache)
    data = DataConfig(clip_len=8, crop_size=32)
    frames = cache.entries.num_frames[cache.indices("train")]
    length = tuple_length(8, 6)  # 36 frames
    short = int((frames < length).sum())
    assert 0 < short < len(frames), frames  # the tiny videos have 30 to 40 frames
    skip = TupleDataset(cache, "train", data, TCGLOptions(gap=6), seed=0)
    assert skip.short_videos == short and len(skip) == len(frames) - short and "skipped" in skip.report
    loop = TupleDataset(cache, "train", data, TCGLOptions(gap=6, short_videos="loop"), seed=0)
    assert loop.short_videos == short and len(loop) == len(frames) and "looped" in loop.report
    for pos in range(len(loop)):
        assert loop[(pos, pos)]["tuple"].shape == (3, 3, 8, 32, 32)
    with pytest.raises(UserError, match="short_videos=loop"):
        TupleDataset(cache, "train", DataConfig(clip_len=16, crop_size=32), TCGLOptions(), seed=0)


# -- STKD ---------------------------------------------------------------------------------------------
def _dct_without_dc(x: np.ndarray, axis: int) -> np.ndarray:
    try:
        from scipy.fft import dct, idct
    except ImportError:  # pragma: no cover - scipy is in the environment
        pytest.skip("scipy not installed")
    coeffs = dct(x, type=2, norm="ortho", axis=axis)
    np.moveaxis(coeffs, axis, 0)[0] = 0.0
    return idct(coeffs, type=2, norm="ortho", axis=axis)


def test_stkd_is_the_dct_along_time_without_its_dc_term():
    x = torch.randn(2, 3, 3, 16, 5, 6, dtype=torch.float64)  # (B, snippets, C, T, H, W)
    expected = _dct_without_dc(x.numpy(), axis=3)
    torch.testing.assert_close(stkd(x), torch.from_numpy(expected))
    # per 4-frame set: each set's own DC term
    sets = x.numpy().reshape(2, 3, 3, 4, 4, 5, 6)
    per_set = _dct_without_dc(sets, axis=4).reshape(x.shape)
    torch.testing.assert_close(stkd(x, 4), torch.from_numpy(per_set))
    assert not torch.allclose(stkd(x, 4), stkd(x))
    with pytest.raises(ValueError):
        stkd(x, 5)
    # the evaluation flag: data.stkd removes each clip's temporal mean in to_model_input
    video = torch.randint(0, 256, (2, 3, 8, 4, 4), dtype=torch.uint8)
    cfg = DataConfig(stkd=True)
    out = to_model_input({"video": video}, cfg, "cpu")["video"]
    plain = to_model_input({"video": video}, DataConfig(), "cpu")["video"]
    torch.testing.assert_close(out, plain - plain.mean(dim=2, keepdim=True))
    test_mode = to_model_input({"video": video[:, None].expand(2, 3, 3, 8, 4, 4)}, cfg, "cpu")["video"]
    torch.testing.assert_close(test_mode[:, 1], out)  # (B, N, 3, T, H, W): each clip its own mean


# -- the GCN, the views, the loss ---------------------------------------------------------------------
def test_dense_gcn_is_gcnconv_on_a_hand_built_graph():
    torch.manual_seed(0)
    n, d = 5, 3
    edges = [(0, 1), (1, 0), (1, 2), (3, 2), (2, 4), (4, 0)]  # directed s -> t; node 3 receives nothing
    adj = torch.zeros(n, n)
    for s, t in edges:
        adj[t, s] = 1.0
    gcn = DenseGCN(d, 4)
    with torch.no_grad():
        gcn.bias.copy_(torch.randn(4))
    x = torch.randn(n, d)
    # GCNConv: add self-loops, deg = in-degree at the targets, norm = deg[s]^-1/2 deg[t]^-1/2, then the bias
    loops = edges + [(i, i) for i in range(n)]
    deg = torch.zeros(n)
    for _, t in loops:
        deg[t] += 1
    xw = x @ gcn.weight.T
    expected = torch.zeros(n, 4)
    for s, t in loops:
        expected[t] += xw[s] / (deg[s].sqrt() * deg[t].sqrt())
    expected += gcn.bias
    torch.testing.assert_close(gcn(x, adj), expected)
    torch.testing.assert_close(gcn(x.expand(2, 3, n, d), adj.expand(2, 3, n, n))[1, 2], expected)  # batched
    assert torch.equal(chain_adjacency(4), torch.tensor([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0.0]]))
    assert torch.allclose(gcn_normalize(torch.zeros(3, 3)), torch.eye(3))


def test_edge_drop_feature_mask_and_dropout_rates_and_their_determinism():
    method = build_method(tcgl_config())
    index = torch.arange(3000)
    draws = method.view_draws(index)
    n = index.numel()
    assert draws["intra_keep"].shape == (n, 3, 4, 4) and draws["inter_keep"].shape == (n, 3, 3)
    assert draws["feature_mask"].shape == draws["dropout"].shape == (n, 64)
    # binomial standard errors: 0.8 over 48k and 27k draws, 0.9 over 192k
    assert abs(draws["intra_keep"].mean().item() - 0.8) < 0.01
    assert abs(draws["inter_keep"].mean().item() - 0.8) < 0.01
    assert abs(draws["feature_mask"].mean().item() - 0.9) < 0.005
    assert abs((draws["dropout"] > 0).float().mean().item() - 0.5) < 0.01
    assert set(draws["dropout"].unique().tolist()) == {0.0, 2.0}
    # a sample's draws depend on its index and the step, not on its position in the batch
    swapped = method.view_draws(index[:5].flip(0))
    assert torch.equal(swapped["feature_mask"], draws["feature_mask"][:5].flip(0))
    method.train()
    method(tuple_batch(2))
    assert int(method.view_step) == 1
    assert not torch.equal(method.view_draws(index[:5])["feature_mask"], draws["feature_mask"][:5])


def test_the_views_feed_the_graphs_as_specified(monkeypatch):
    """View 2's GCN input is the node features times the sample's mask, its adjacency the clean one
    times the edge-keep draws; view 1 is clean."""
    torch.manual_seed(0)
    method = build_method(tcgl_config())
    method.eval()
    batch = tuple_batch(2)
    calls = []
    original = DenseGCN.forward
    monkeypatch.setattr(DenseGCN, "forward", lambda self, x, adj: calls.append((x, adj)) or original(self, x, adj))
    with torch.no_grad():
        method(batch)
        snippets, sets = method.encode(batch["tuple"])
    draws = method.view_draws(batch["index"])
    (i1, a1), (i2, a2), (e1, b1), (e2, b2) = calls
    chain4, chain3 = chain_adjacency(4), chain_adjacency(3)
    torch.testing.assert_close(i1, sets)
    torch.testing.assert_close(i2, sets * draws["feature_mask"][:, None, None])
    assert torch.equal(a1, chain4.expand(2, 3, 4, 4)) and torch.equal(a2, chain4 * draws["intra_keep"])
    torch.testing.assert_close(e1, snippets)
    torch.testing.assert_close(e2, snippets * draws["feature_mask"][:, None])
    assert torch.equal(b1, chain3.expand(2, 3, 3)) and torch.equal(b2, chain3 * draws["inter_keep"])


def test_grace_loss_matches_a_direct_computation():
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(3, 4, 6), torch.randn(3, 4, 6), 0.5
    sim = lambda a, b: F.cosine_similarity(a, b, dim=0) / tau  # noqa: E731

    def semi(a, b, i):
        pos = torch.exp(sim(a[i], b[i]))
        refl = sum(torch.exp(sim(a[i], a[j])) for j in range(len(a)) if j != i)
        between = sum(torch.exp(sim(a[i], b[j])) for j in range(len(a)))
        return -torch.log(pos / (refl + between))

    expected = torch.stack(
        [0.5 * (semi(z1[g], z2[g], i) + semi(z2[g], z1[g], i)) for g in range(3) for i in range(4)]
    ).mean()
    torch.testing.assert_close(grace_loss(z1, z2, tau), expected)


# -- the inter graph and its leak ---------------------------------------------------------------------
def test_true_order_edges_reveal_the_label_and_position_edges_do_not():
    order = torch.arange(6)
    leaky = true_order_adjacency(order)
    # the node with two edges is the position holding the middle snippet (true index 1)
    middle = leaky.sum(dim=2).argmax(dim=1)
    assert middle.tolist() == [list(p).index(1) for p in PERMUTATIONS]
    assert len({tuple(a.flatten().tolist()) for a in leaky}) == 3  # the graph tells 3 groups of labels apart
    assert torch.equal(leaky[0], chain_adjacency(3))

    def run(inter_edges, labels):
        torch.manual_seed(0)
        method = build_method(tcgl_config(inter_edges=inter_edges))
        method.eval()
        logits = []
        method.asop.register_forward_hook(lambda m, i, o: logits.append(o))
        batch = {**tuple_batch(6), "order": labels}
        with torch.no_grad():
            out = method(batch)
        return logits[0], out["inter"]

    torch.manual_seed(0)
    method = build_method(tcgl_config(inter_edges="true_order")).eval()
    batch = tuple_batch(6)
    with torch.no_grad():  # order_logits is the clean-view ASOP of forward
        captured = []
        method.asop.register_forward_hook(lambda m, i, o: captured.append(o))
        method(batch)
        torch.testing.assert_close(method.order_logits(batch["tuple"], batch["order"]), captured[0])

    a, b = torch.zeros(6, dtype=torch.long), torch.arange(6)
    logits_a, inter_a = run("positions", a)
    logits_b, inter_b = run("positions", b)
    assert torch.equal(logits_a, logits_b) and torch.equal(inter_a, inter_b)  # the label never reaches the model
    leaky_a, _ = run("true_order", a)
    leaky_b, _ = run("true_order", b)
    assert torch.equal(leaky_a, logits_a)  # label 0 is the identity: the same chain
    assert not torch.allclose(leaky_a, leaky_b)


def test_true_order_says_that_it_leaks(capsys):
    method = build_method(tcgl_config(inter_edges="true_order"))
    assert method.leaks_order and "gives the order head its answer" in capsys.readouterr().err
    assert not build_method(tcgl_config()).leaks_order


# -- every option --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"intra_gcn": "per_position"},
        {"inter_edges": "true_order"},
        {"stkd": False},
        {"edge_drop": 0.0, "feature_mask": 0.0, "order_dropout": 0.0},
        {"sets": 2},
    ],
)
def test_every_option_trains_and_every_parameter_gets_a_gradient(options):
    torch.manual_seed(0)
    method = build_method(tcgl_config(**options))
    method.train()
    assert method.audio_encoder is None and not method.uses_audio and method.sample_mode == "tuple"
    out = method(tuple_batch(3))
    assert set(out) == {"loss", "intra", "inter", "order", "order_acc"}
    torch.testing.assert_close(out["loss"].detach(), out["intra"] + out["inter"] + out["order"])
    out["loss"].backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None]
    assert not missing  # DDP without find_unused_parameters
    assert len(method.intra_gcn) == (3 if options.get("intra_gcn") == "per_position" else 1)


def test_c3d_sees_each_frame_set_tiled_to_eight_frames():
    cfg = tcgl_config()
    cfg.model.backbone, cfg.data.clip_len = "c3d", 16
    torch.manual_seed(0)
    method = build_method(cfg)
    seen = []
    method.video_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    batch = tuple_batch(1, clip_len=16)
    method(batch)["loss"].backward()
    assert seen == [torch.Size([3, 3, 16, 16, 16]), torch.Size([12, 3, 8, 16, 16])]
    tuples = stkd(batch["tuple"], 4)
    sets = tuples.unflatten(3, (4, 4)).permute(0, 1, 3, 2, 4, 5, 6).flatten(0, 2)
    assert torch.equal(sets[5, :, :4], tuples[0, 1, :, 4:8])  # snippet 1, set 1


def test_bad_options_and_audio_are_refused():
    with pytest.raises(UserError, match="tcgl.sets"):
        build_method(tcgl_config(sets=3))
    with pytest.raises(UserError, match="edge_drop"):
        build_method(tcgl_config(edge_drop=1.0))
    method = build_method(tcgl_config()).eval()
    with pytest.raises(UserError, match="eval.modality=video"):
        method.embed(torch.randn(1, 3, 4, 16, 16), None, "both")
    assert method.embed(torch.randn(1, 3, 4, 16, 16), None, "video").shape == (1, 64)


# -- end to end ----------------------------------------------------------------------------------------
def test_pretrain_then_linear_probe_and_finetuning_with_stkd(tiny_cache, tmp_path):
    run_cli(
        "pretrain",
        "--data",
        str(tiny_cache),
        "--out",
        str(tmp_path / "pre"),
        *TINY,
        "method.name=tcgl",
        "tcgl.gap=2",
        "train.epochs=1",
        "train.max_steps_per_epoch=2",
    )
    log = [json.loads(line) for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert any("order_acc" in r for r in log), log[:3]
    from avcl.methods.tcgl import evaluate_order

    result = evaluate_order(str(tmp_path / "pre" / "last.pt"), "train", draws=1, batch_size=8)
    assert 0.0 <= result["order_acc"] <= 100.0 and result["tuples"] > 0 and result["inter_edges"] == "positions"
    run_cli(
        "linear",
        "--checkpoint",
        str(tmp_path / "pre"),
        "--out",
        str(tmp_path / "lin"),
        "eval.linear_epochs=2",
        "eval.modality=video",
        "data.stkd=true",
    )
    metrics = json.loads((tmp_path / "lin" / "metrics.json").read_text())
    assert metrics["modality"] == "video" and metrics["feature_dim"] == 64
    # fine-tuning from the TCGL checkpoint, then its video-level test (run by finetune, and again by `avcl test`)
    run_cli(
        "finetune",
        "--checkpoint",
        str(tmp_path / "pre"),
        "--out",
        str(tmp_path / "ft"),
        "--modality",
        "video",
        "eval.epochs=2",
        "data.stkd=true",
    )
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert result["epochs"] == 2 and 0.0 <= result["best_val_acc"] <= 100.0
    assert result["test"]["modality"] == "video" and result["test"]["videos"] > 0
    for name in ("best.pt", "last.pt", "loss_curves.png", "test/metrics.json", "test/confusion.png"):
        assert (tmp_path / "ft" / name).is_file(), name
    from avcl.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "ft" / "best.pt")
    assert ckpt["kind"] == "finetune" and ckpt["meta"]["backbone_method"] == "tcgl"
    assert ckpt["config"]["data"]["stkd"] is True
    proc = run_cli("test", "--checkpoint", str(tmp_path / "ft"), "--out", str(tmp_path / "test"))
    tested = json.loads(proc.stdout.splitlines()[0])
    assert tested["top1"] == pytest.approx(result["test"]["top1"]) and tested["videos"] == result["test"]["videos"]


def test_tcgl_is_a_video_only_row_of_compare():
    from avcl.config import load_config
    from avcl.experiments import row_config, table4_rows

    rows = table4_rows("avcl,tcgl")
    assert [r.name for r in rows] == ["AVCL", "TCGL (video only)"] and len(table4_rows("all")) == 11
    cfg = row_config(load_config("configs/demo_cpu.yaml"), rows[1], seed=0)
    assert cfg.method.name == "tcgl" and cfg.eval.modality == "video" and cfg.data.stkd


def test_prepare_reports_the_videos_shorter_than_a_tcgl_tuple(tiny_cache):
    from avcl.data.cache import PreparedCache
    from avcl.data.prepare import format_summary

    summary = json.loads((tiny_cache / "report.json").read_text())
    frames = PreparedCache(tiny_cache).entries.num_frames
    assert summary["shorter_than_tcgl_tuple"] == int((frames < 64).sum()) > 0  # the tiny videos are 30-40 frames
    assert (
        f"shorter than a TCGL tuple (64 frames; tcgl.short_videos=skip|loop): {summary['shorter_than_tcgl_tuple']}"
        in format_summary(summary)
    )
