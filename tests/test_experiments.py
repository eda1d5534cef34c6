"""The table runners: every row of Tables 1-4 is a valid configuration; a table is produced (Markdown,
JSON, bar chart) with mean and standard deviation over seeds, and a second run reuses cached rows."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, run_cli

from avcl.config import load_config
from avcl.errors import UserError
from avcl.experiments import RANDOM_INIT, TABLE4, TABLES, Row, row_config, run_row, run_table, table4_rows


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4"])
def test_every_row_is_a_valid_configuration(table):
    base = load_config("configs/avcl_r3d.yaml")
    rows = TABLE4 if table == "table4" else TABLES[table][1]
    configs = [row_config(base, row, seed=1) for row in rows]
    assert all(c.train.seed == 1 for c in configs)
    assert len({repr(c) for c in configs}) == len(rows), "two rows of a table are the same run"
    assert all(row.paper is not None for row in rows)


def test_method_selection_and_its_errors():
    assert [r.name for r in table4_rows("avcl,baseline-r+a")] == ["AVCL", "Baseline-R+A"]
    assert len(table4_rows("all")) == 11
    assert table4_rows("avcl-paper")[0].name == "AVCL (paper literal)"
    # the paper-literal row keeps the paper's weights even when the base config's are overridden
    paper = row_config(
        load_config(None, ["method.lambda_cor=0.5", "method.lambda_self=0.5"]), table4_rows("avcl-paper")[0], 0
    )
    assert (paper.method.lambda_cor, paper.method.lambda_self, paper.method.gate) == (0.9, 0.1, "relu")
    with pytest.raises(UserError, match="unknown method"):
        table4_rows("avcl,simclrr")


def test_a_table_with_seeds_is_written_and_resumes_from_cached_rows(tiny_cache, tmp_path, capsys):
    base = load_config(
        None,
        [*TINY, f"data.root={tiny_cache}", "train.epochs=1", "eval.epochs=1", "eval.linear_epochs=5", "eval.lr=0.01"],
    )
    rows = [Row("AVCL", ("method.name=avcl",), paper=75.6), Row("Baseline-A", supervised="audio", paper=52.9)]
    result = run_table(base, "tiny", rows, tmp_path, seeds=2, protocols=("linear",), name="t")
    md = (tmp_path / "t.md").read_text()
    assert "| AVCL |" in md and "| Baseline-A |" in md and "±" in md and "75.6" in md
    assert "finetune top-1" in md  # the supervised row adds its protocol
    # per-modality probe columns, and a random-init row first, probed like every learned row
    assert "| row | linear video (%) | linear audio (%) | linear both (%) | finetune top-1 (%) |" in md
    lines = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert lines[0].startswith("| random init (untrained encoders) |")
    assert lines[0].count("±") == 3 and lines[0].split("|")[5].strip() == "n/a"  # probes, no fine-tuning
    assert lines[1].count("±") == 4 and lines[2].count("n/a") == 3  # AVCL: all; Baseline-A: fine-tuned only
    assert len(result.runs["AVCL"]) == 2 and {r["seed"] for r in result.runs["AVCL"]} == {0, 1}
    assert len(result.runs["random init"]) == 2
    assert (tmp_path / "t_linear.png").is_file() and (tmp_path / "t_finetune.png").is_file()
    runs = json.loads((tmp_path / "t.json").read_text())["runs"]
    assert "finetune" in runs["Baseline-A"][0]
    assert set(runs["AVCL"][1]) == {"row", "seed", "linear_video", "linear_audio", "linear_both", "finetune"}
    assert {"linear_video", "linear_audio", "linear_both"} <= set(runs["random init"][0])
    assert (tmp_path / "avcl" / "seed0" / "linear" / "audio" / "metrics.json").is_file()
    (tmp_path / "avcl" / "seed0" / "pretrain" / "last.pt").unlink()  # a cached row needs no checkpoint
    again = run_table(base, "tiny", rows, tmp_path, seeds=2, protocols=("linear",), name="t")
    assert again.runs == result.runs


def test_a_row_resumes_from_its_result_json_without_training(tmp_path, monkeypatch):
    import avcl.experiments as experiments

    def no_run(*args, **kwargs):
        raise AssertionError("a row cached in result.json ran again")

    monkeypatch.setattr(experiments, "row_config", no_run)
    cached = {"row": "AVCL", "seed": 3, "linear_video": 40.0, "linear_audio": 30.0, "linear_both": 50.0}
    (tmp_path / "result.json").write_text(json.dumps(cached))
    assert run_row(load_config(None), Row("AVCL"), 3, tmp_path, ("linear",)) == cached


def test_a_row_whose_result_json_was_cut_short_is_computed_again(tiny_cache, tmp_path, capsys):
    base = load_config(None, [*TINY, f"data.root={tiny_cache}"])
    (tmp_path / "result.json").write_text('{"row": "random init", "seed": 0, "kn')  # an older, non-atomic write
    result = run_row(base, RANDOM_INIT, 0, tmp_path, ("knn",))
    assert "not valid JSON" in capsys.readouterr().err
    assert json.loads((tmp_path / "result.json").read_text()) == result and 0 <= result["knn"] <= 100
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_ablate_cli_writes_its_table(tiny_cache, tmp_path):
    run_cli(
        "ablate",
        "table1",
        "--data",
        str(tiny_cache),
        "--out",
        str(tmp_path),
        "--seeds",
        "1",
        "--protocols",
        "linear",
        *TINY,
        "train.epochs=1",
        "eval.linear_epochs=3",
    )
    md = (tmp_path / "table1.md").read_text()
    assert md.count("\n| ") == 6 and "1 shared model" in md and (tmp_path / "table1_linear.png").is_file()
    assert "| random init (untrained encoders) |" in md and "linear audio (%)" in md


def test_knn_and_retrieval_columns(tiny_cache, tmp_path):
    base = load_config(None, [*TINY, f"data.root={tiny_cache}", "train.epochs=1"])
    rows = [Row("AVCL", ("method.name=avcl",), paper=75.6)]
    run_table(base, "tiny", rows, tmp_path, seeds=1, protocols=("knn", "retrieval"), name="n")
    md = (tmp_path / "n.md").read_text()
    assert "kNN both (%)" in md and "retrieval R@1 (%)" in md and "retrieval R@5 (%)" in md
    results = [json.loads(path.read_text()) for path in tmp_path.rglob("result.json")]
    assert sorted(r["row"] for r in results) == ["AVCL", "random init"]
    for result in results:
        assert 0 <= result["retrieval_top1"] <= result["retrieval_top5"] <= 100 and 0 <= result["knn"] <= 100
