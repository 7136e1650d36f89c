"""IFEval scoring through lm-eval's checkers: hand-reasoned verdicts, determinism, offline punkt data."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.types import Completion, Item
from tasks.base import ScoringContext, TaskError, get_task
from tasks.ifeval import check_response

CASES = json.loads((Path(__file__).parent / "data" / "ifeval_cases.json").read_text())["cases"]
REPO = Path(__file__).resolve().parents[1]


def make_item(case: dict, mean_instructions: float = 1.0) -> Item:
    meta = {
        "key": 1,
        "instruction_id_list": case["instruction_id_list"],
        "kwargs": case["kwargs"],
        "mean_instructions": mean_instructions,
    }
    return Item("case", case["prompt"], "", meta)


def verdicts(case: dict) -> tuple[list[int], list[int]]:
    checks = check_response(make_item(case), case["response"])
    return [int(x) for x in checks["strict"]], [int(x) for x in checks["loose"]]


def test_cases_cover_many_instruction_types():
    kinds = {i for c in CASES for i in c["instruction_id_list"]}
    assert len(kinds) >= 12
    assert any(c["strict"] != c["loose"] for c in CASES)  # the loose variants are exercised


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hand_reasoned_verdicts(case):
    assert verdicts(case) == (case["strict"], case["loose"])


def test_same_response_twice_same_result_language_detection_included():
    # langdetect samples n-grams at random: unseeded, short or mixed texts flip between runs.
    lang_cases = [c for c in CASES if any("case" in i or "language" in i for i in c["instruction_id_list"])]
    assert lang_cases
    first = [verdicts(c) for c in lang_cases]
    random.seed(12345)  # disturbing the global generator must not matter either
    second = [verdicts(c) for c in lang_cases]
    assert first == second
    import langdetect

    ambiguous = "ok sure, ciao amigo, merci"
    assert len({langdetect.detect(ambiguous) for _ in range(10)}) == 1


def test_task_score_strips_think_and_maps_outcomes():
    task = get_task("ifeval")
    case = next(c for c in CASES if c["instruction_id_list"] == ["punctuation:no_comma"])
    item = make_item(case, mean_instructions=2.0)
    comps = [
        Completion(
            "a", "", "<think>First, I will, maybe, use commas.</think>No commas at all.", "stop", 1, 1
        ),
        Completion("b", "", "Commas, everywhere.", "stop", 1, 1),
        Completion("c", "", "Cut off, mid", "length", 1, 1),
        Completion("d", "", "Cut off but fine", "length", 1, 1),
    ]
    with ScoringContext() as ctx:
        scored = task.score([item] * 4, comps, ctx)
    assert [s.verdict.outcome for s in scored] == ["correct", "wrong", "truncated", "correct"]
    first = scored[0]
    assert first.scores == {
        "prompt_level_strict_acc": 1.0,
        "inst_level_strict_acc": 0.5,  # one followed instruction / mean 2 per prompt
        "prompt_level_loose_acc": 1.0,
        "inst_level_loose_acc": 0.5,
    }
    detail = json.loads(first.verdict.detail)
    assert detail == {"instructions": ["punctuation:no_comma"], "strict": [1], "loose": [1]}


def test_local_file_and_instruction_weights(data_dir):
    items = get_task("ifeval").load(data_dir)
    assert len(items) == 541 and len({it.id for it in items}) == 541
    total = sum(len(it.metadata["instruction_id_list"]) for it in items)
    assert total == 834
    # A response that follows everything scores exactly 1.0 on the pooled instruction-level metric.
    pooled = sum(len(it.metadata["instruction_id_list"]) / it.metadata["mean_instructions"] for it in items)
    assert pooled / len(items) == pytest.approx(1.0, abs=1e-12)


def test_duplicate_keys_are_one_clear_error(tmp_path):
    row = {"key": 7, "prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    (tmp_path / "ifeval").mkdir()
    (tmp_path / "ifeval" / "input_data.jsonl").write_text((json.dumps(row) + "\n") * 2)
    with pytest.raises(TaskError, match="duplicate item id '7'"):
        get_task("ifeval").load(tmp_path)


def test_punkt_data_is_written_offline_without_any_download(tmp_path):
    """A fresh process with sockets disabled and an empty cache: lm-eval's import must not download."""
    script = """
import socket, sys
def refuse(*a, **k):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
import nltk
def no_download(*a, **k):
    raise RuntimeError("nltk.download called")
nltk.download = no_download
from tasks.nltk_data import ifeval_modules
ifeval_modules()
from lm_eval.tasks.ifeval import instructions_util as iu
print(iu.count_sentences("I like tea. Dr. Smith agrees. Mr. Jones does not."))
"""
    env = {**os.environ, "CGD_BENCH_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "3"  # the abbreviations do not end sentences
    lang_dir = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in lang_dir.iterdir()) == sorted(
        ["abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab"]
    )
    assert not [p for p in lang_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind
