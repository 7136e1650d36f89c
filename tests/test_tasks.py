"""Math tasks over the real files: counts, ids, gold formats, and one-line errors for bad data."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.base import TaskError, get_task, task_names


@pytest.mark.parametrize(("name", "count"), [("math500", 500), ("amc23", 40), ("aime24", 30), ("aime25", 30)])
def test_counts_and_unique_ids(data_dir, name, count):
    items = get_task(name).load(data_dir)
    assert len(items) == count
    assert len({it.id for it in items}) == count
    assert all(it.problem and it.gold for it in items)


def test_metadata_and_gold_formats(data_dir):
    m5 = get_task("math500").load(data_dir)
    assert (
        m5[0].id.startswith("test/") and m5[0].metadata["level"] in range(1, 6) and m5[0].metadata["subject"]
    )
    amc = get_task("amc23").load(data_dir)
    stored = json.loads((data_dir / "amc23" / "test.jsonl").read_text().splitlines()[0])["answer"]
    assert isinstance(stored, float) and stored.is_integer()  # the file stores floats ...
    assert amc[0].gold == str(int(stored)) and amc[0].metadata["contest"] == "AMC 12"  # ... graded as ints
    aime = get_task("aime24").load(data_dir)
    assert aime[0].metadata == {"year": 2024, "contest": "AIME", "url": aime[0].metadata["url"]}
    assert any(it.gold.startswith("0") for it in aime) or all(it.gold.isdigit() for it in aime)


def test_unknown_task_lists_known():
    with pytest.raises(TaskError, match="known tasks: .*math500"):
        get_task("math5000")
    assert {"math500", "amc23", "aime24", "aime25"} <= set(task_names())


def test_missing_file_and_malformed_row_name_file_and_line(tmp_path, data_dir):
    with pytest.raises(TaskError, match="data file not found: .*aime24/test.jsonl"):
        get_task("aime24").load(tmp_path)
    (tmp_path / "amc23").mkdir()
    src = (data_dir / "amc23" / "test.jsonl").read_text().splitlines()
    (tmp_path / "amc23" / "test.jsonl").write_text("\n".join(src[:3] + ["{not json"] + src[3:]) + "\n")
    with pytest.raises(TaskError, match=r"amc23/test.jsonl:4: malformed JSON"):
        get_task("amc23").load(tmp_path)
    (tmp_path / "amc23" / "test.jsonl").write_text(src[0] + "\n" + '{"problem": "x"}\n')
    with pytest.raises(TaskError, match=r"test.jsonl:2: missing field\(s\) answer"):
        get_task("amc23").load(tmp_path)


def test_data_dir_flag_env_and_missing(tmp_path, monkeypatch, data_dir):
    from tasks.data import DATA_ENV, resolve_data_dir

    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    assert resolve_data_dir(None) == data_dir
    assert resolve_data_dir(tmp_path) == tmp_path.resolve()
    with pytest.raises(TaskError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")
    shutil.rmtree(tmp_path)
