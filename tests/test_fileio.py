"""Shared file IO: an atomic write leaves the old file or the new one, never a part; a JSON-lines file
read after a killed writer loses only its cut-off last line, and a damaged line before it is refused."""

from __future__ import annotations

import json

import pytest

from avcl import fileio


class _Unserialisable:
    pass


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "data.bin"
    assert fileio.atomic_write(path, b"old") == path
    fileio.atomic_write(path, memoryview(b"new bytes"))
    assert path.read_bytes() == b"new bytes"
    fileio.atomic_write(path, "text é")
    assert path.read_text(encoding="utf-8") == "text é"
    assert _leftovers(path.parent) == []


def test_a_serialiser_that_fails_mid_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    fileio.write_json(path, {"top1": 50.0})
    before = path.read_bytes()
    # json.dump streams: "top1" is written to the temporary file before the second value fails.
    with pytest.raises(TypeError):
        fileio.write_json(path, {"top1": 99.0, "bad": _Unserialisable()})
    assert path.read_bytes() == before and json.loads(before) == {"top1": 50.0}
    assert _leftovers(tmp_path) == []


def test_an_interrupted_write_of_a_new_file_leaves_no_file(tmp_path):
    path = tmp_path / "result.json"

    def write_then_die(fh):
        fh.write(b'{"row": "AVCL", "fine')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(path, write_then_die)
    assert not path.exists() and _leftovers(tmp_path) == []


def test_write_json_ends_with_a_newline_and_keeps_the_indent_asked_for(tmp_path):
    path = fileio.write_json(tmp_path / "a.json", {"a": [1, 2]}, indent=1)
    assert path.read_text() == '{\n "a": [\n  1,\n  2\n ]\n}\n'


def test_jsonl_reader_skips_a_cut_off_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert fileio.scan_jsonl(path) == ([{"step": 1}, {"step": 2}], True)
    path.write_text('{"step": 1}\n{"step": 2, "lo\n')  # cut short, then a newline from the next writer
    assert fileio.scan_jsonl(path) == ([{"step": 1}], True)
    path.write_text('{"step": 1}\n\n{"step": 2}\n')
    assert fileio.scan_jsonl(path) == ([{"step": 1}, {"step": 2}], False)
    assert fileio.read_jsonl(tmp_path / "absent.jsonl") == []


def test_jsonl_reader_refuses_a_damaged_line_before_the_last(tmp_path):
    path = tmp_path / "index.jsonl"
    path.write_text('{"path": "a"}\nnot json\n{"path": "b"}\n')
    with pytest.raises(fileio.JsonLinesError, match="line 2") as error:
        fileio.read_jsonl(path)
    assert error.value.path == path and error.value.line == 2


def test_appending_after_a_cut_off_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "index.jsonl"
    path.write_text('{"path": "a"}\n{"path": "b", "la')
    assert fileio.cut_torn_line(path) == len('{"path": "b", "la')
    with open(path, "a") as f:
        fileio.append_jsonl(f, {"path": "c"})
        fileio.append_jsonl(f, {"path": "d"}, durable=False)
    assert fileio.read_jsonl(path) == [{"path": "a"}, {"path": "c"}, {"path": "d"}]
    path.write_text('{"path": "a"}\n{"path": "b", "la\n')  # a cut-off line that did get a newline
    assert fileio.cut_torn_line(path) == len('{"path": "b", "la\n')
    assert path.read_text() == '{"path": "a"}\n' and fileio.cut_torn_line(path) == 0
    assert fileio.cut_torn_line(tmp_path / "absent.jsonl") == 0


def test_a_run_log_damaged_before_its_last_line_is_refused_not_silently_shortened(tmp_path):
    from avcl.engine.logger import RunLogger, read_log
    from avcl.errors import UserError

    logger = RunLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        logger.log("train", step, loss=float(step))
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2, 3]
    lines[1] = lines[1][:10]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="log.jsonl: line 2 is not valid JSON"):
        read_log(tmp_path / "log.jsonl")
    with pytest.raises(UserError, match="line 2"):
        logger.drop_after(3)
