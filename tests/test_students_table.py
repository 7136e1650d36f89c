"""The per-student table of a run with several base students: one row per (method, student), each cell that
student's models only, equal to a recomputation from the samples; absent for a one-student run."""

from __future__ import annotations

import json

from reports.rundata import RunData
from reports.students import students_table
from tests.runfactory import correctness, write_run


def test_one_row_per_student_from_that_students_samples(tmp_path):
    root = tmp_path / "run"
    scores = {
        "base": {"toy_id": correctness(0.5, 8, 1, 1), "toy_ood": correctness(0.3, 6, 2, 2)},
        "cgd": {
            "toy_id": [correctness(0.9, 8, 1, 3), correctness(0.1, 8, 1, 4)],
            "toy_ood": [correctness(0.6, 6, 2, 5), correctness(0.2, 6, 2, 6)],
        },
    }
    write_run(root, scores, seeds={"cgd": 2})
    assert students_table(RunData.load(root)) is None  # one student: nothing to break down

    results = json.loads((root / "results.json").read_text())
    labels = results["methods"]["cgd"]
    # The two "seeds" become two base students (a second base model is student 1's).
    results["students"] = {"base": 0, labels[0]: 0, labels[1]: 1}
    (root / "results.json").write_text(json.dumps(results))
    run = RunData.load(root)
    table = students_table(run)
    assert table is not None
    rows = dict(table.rows)
    assert list(rows) == ["Base · student 0", "CGD · student 0", "CGD · student 1"]
    for student, per_seed_id in enumerate(scores["cgd"]["toy_id"]):
        expected = 100 * sum(sum(s) / len(s) for s in per_seed_id) / len(per_seed_id)
        cell = rows[f"CGD · student {student}"]["toy_id"]
        assert abs(cell.value - expected) < 1e-9 and cell.items == 8 and cell.n == 1
        assert cell.ci_low <= cell.value <= cell.ci_high
    assert rows["CGD · student 1"]["toy_ood"].n == 2
