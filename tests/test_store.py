"""The run store: append-only, torn-tail repair, no duplicates, atomic JSON."""

from __future__ import annotations

import json

from harness.store import RunFolder, SampleLog, config_hash, write_json_atomic


def rec(item: str, s: int, **extra: object) -> dict:
    return {"item_id": item, "sample_index": s, **extra}


def test_append_and_reload(tmp_path):
    path = tmp_path / "s.jsonl"
    log = SampleLog(path)
    log.append([rec("a", 0), rec("a", 1)])
    log.append([rec("a", 1, dup=True), rec("b", 0)])  # the duplicate key is refused
    again = SampleLog(path)
    assert len(again) == 3
    assert ("a", 1) in again and again.get(("a", 1)) == rec("a", 1)
    assert len(path.read_text().splitlines()) == 3


def test_torn_tail_is_cut_and_resume_appends_cleanly(tmp_path):
    path = tmp_path / "s.jsonl"
    SampleLog(path).append([rec("a", 0), rec("b", 0)])
    with path.open("ab") as fh:  # a kill in the middle of a write
        fh.write(b'{"item_id": "c", "sample_ind')
    log = SampleLog(path)
    assert len(log) == 2
    log.append([rec("c", 0)])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["item_id"], r["sample_index"]) for r in lines] == [("a", 0), ("b", 0), ("c", 0)]


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_run_folder_layout(tmp_path):
    run = RunFolder.for_config(tmp_path, "eval-x", {"model": "m"})
    assert run.root.name.startswith("eval-x-")
    run.write_config({"model": "m"})
    write_json_atomic(run.results_path, {"ok": True})
    assert (run.root / "config.yaml").read_text().startswith("model: m")
    assert json.loads(run.results_path.read_text()) == {"ok": True}
    assert not list(run.root.glob(".*.tmp"))


def test_corrupt_middle_line_keeps_every_other_record(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    SampleLog(path).append([rec(f"i{k}", 0) for k in range(128)])
    lines = path.read_bytes().splitlines(keepends=True)
    lines[10] = b'{"item_id": "i10", "sample_ind\xff garbage\n'  # damaged in place, newline intact
    path.write_bytes(b"".join(lines))
    log = SampleLog(path)
    assert len(log) == 127 and ("i127", 0) in log and ("i10", 0) not in log
    assert log.skipped == [11]
    assert "line 11" in capsys.readouterr().err
    log.append([rec("i10", 0)])  # redone, appended; nothing after the bad line was lost
    again = SampleLog(path)
    assert len(again) == 128 and len(path.read_bytes().splitlines()) == 129


def test_a_line_without_the_key_fields_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"item_id": "a", "sample_index": 0}\n{"unrelated": 1}\n[1, 2]\n{"item_id": "b", "sample_index": 0}\n'
    )
    log = SampleLog(path)
    assert len(log) == 2 and log.skipped == [2, 3]
