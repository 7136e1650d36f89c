"""The critique dataset: one `CritiqueRecord` per training problem, stored as JSONL.

A record carries everything any training method may need (x, y*, y', c, ŷ and their grades); a method
picks the fields it uses (see `trainers.methods`). Records written by the data builder and records imported
from alpaca-style files (the CGD paper's and the CFT paper's released formats) land in the same shape.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

CONCLUSIONS = ("right", "wrong")
_TEXT_FIELDS = (
    "reference_solution",
    "student_answer",
    "critique",
    "refined_answer",
    "student_verdict",
    "refined_verdict",
)
# A "conclusion line" names the word conclusion and a colon; markdown decoration around either is allowed.
_CONCLUSION_LINE = re.compile(r"\bconclusion\b[\s*_`]*:(?P<value>.*)$", re.IGNORECASE)
_VALUES = {"right": "right", "correct": "right", "wrong": "wrong", "incorrect": "wrong"}


class RecordError(ValueError):
    """A malformed record; the message names the record id (if known) and the file line."""


def parse_conclusion(text: str | None) -> str | None:
    """'right' / 'wrong' from the last "Conclusion: ..." line of a critique, else None.

    Only the last conclusion line counts, so a critique that quotes an earlier verdict and then revises it
    gets the revised one. "Correct"/"Incorrect" (the CFT evaluation wording) map to right/wrong; anything
    else on that line (e.g. "partially right") is None rather than a guess.
    """
    if not text:
        return None
    for line in reversed(text.splitlines()):
        m = _CONCLUSION_LINE.search(line)
        if m is None:
            continue
        words = re.findall(r"[a-z]+", m.group("value").lower())
        return _VALUES.get(words[0]) if words else None
    return None


@dataclass
class CritiqueRecord:
    """One training problem and the artefacts of the critique pipeline for it.

    `gold` is the final answer string ("" when unknown, e.g. imported data). `conclusion` is derived from
    the critique when not given. `tokens` maps a pipeline stage (probe, critique, refine, ...) to the
    number of generated tokens.
    """

    id: str
    problem: str
    gold: str = ""
    reference_solution: str | None = None
    student_answer: str | None = None
    critique: str | None = None
    conclusion: Literal["right", "wrong"] | None = None
    refined_answer: str | None = None
    student_verdict: str | None = None
    refined_verdict: str | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conclusion is None and self.critique:
            self.conclusion = parse_conclusion(self.critique)  # type: ignore[assignment]
        if self.conclusion not in (None, *CONCLUSIONS):
            raise RecordError(
                f"record {self.id!r}: conclusion must be 'right', 'wrong' or null, got {self.conclusion!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Any, *, line: int | None = None) -> CritiqueRecord:
        """Validate and build; errors name the record id and, when given, the file line."""
        rid = row.get("id") if isinstance(row, dict) else None
        where = f"record {rid!r}" + (f" (line {line})" if line is not None else "")
        if not isinstance(row, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(row).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise RecordError(f"{where}: unknown field(s) {unknown}; put extra data under 'metadata'")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)  # numeric ids from other tools are common and unambiguous
        if not isinstance(rid, str) or not rid:
            raise RecordError(f"{where}: 'id' must be a non-empty string")
        if not isinstance(row.get("problem"), str) or not row["problem"].strip():
            raise RecordError(f"{where}: 'problem' must be a non-empty string")
        if not isinstance(row.get("gold", ""), str):
            raise RecordError(f"{where}: 'gold' must be a string")
        for name in (*_TEXT_FIELDS, "conclusion"):
            if row.get(name) is not None and not isinstance(row[name], str):
                raise RecordError(f"{where}: {name!r} must be a string or null")
        tokens = row.get("tokens") or {}
        if not isinstance(tokens, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in tokens.items()
        ):
            raise RecordError(f"{where}: 'tokens' must map stage names to integers")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise RecordError(f"{where}: 'metadata' must be an object")
        try:
            return cls(**{**row, "id": rid, "tokens": dict(tokens), "metadata": dict(metadata)})
        except RecordError as e:
            raise RecordError(f"{e}" + (f" (line {line})" if line is not None else "")) from None


def load_records(path: str | Path) -> list[CritiqueRecord]:
    """Read a JSONL critique dataset; blank lines are skipped; ids must be unique."""
    records: list[CritiqueRecord] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
            rec = CritiqueRecord.from_dict(row, line=lineno)
            if rec.id in seen:
                raise RecordError(
                    f"{path}: record {rec.id!r} (line {lineno}) repeats the id of line {seen[rec.id]}"
                )
            seen[rec.id] = lineno
            records.append(rec)
    return records


def save_records(path: str | Path, records: Iterable[CritiqueRecord]) -> None:
    """Write JSONL atomically: a reader never sees a half-written file, a crash leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The CFT repo writes "Question:\n{q}\nSolution:\n{s}\n" or with blank lines between; both parse.
_CFT_INPUT = re.compile(r"^\s*Question:\s*\n(?P<q>.*?)\n\s*Solution:[ \t]*\n?(?P<s>.*)$", re.DOTALL)
# The CGD pipeline writes "Question: {q}\n\nStudent's Initial Answer: {y'}\n\nCritique: {c}". The first
# occurrence of each marker splits, so a critique may quote the markers but the question may not.
_CGD_INPUT = re.compile(
    r"^\s*Question:\s*(?P<q>.*?)\n\nStudent's Initial Answer:\s*(?P<a>.*?)\n\nCritique:\s*(?P<c>.*)$",
    re.DOTALL,
)


def _read_rows(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(text)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
    return rows


def import_alpaca(
    path: str | Path, kind: Literal["cft", "cgd"] = "cgd", *, id_prefix: str | None = None
) -> list[CritiqueRecord]:
    """Records from an alpaca-style {instruction, input, output} file (JSON list or JSONL).

    kind="cft": input "Question:\\n…\\nSolution:\\n…" gives problem and student_answer; output is the critique
    (a leading "Critique:" header is dropped). kind="cgd": input "Question: …\\n\\nStudent's Initial Answer: …
    \\n\\nCritique: …" gives problem, student_answer and critique; output is the refined answer. Gold answers
    are not in these formats, so `gold` is "". Ids are `<id_prefix><row index>` (prefix: file stem + "-").
    """
    if kind not in ("cft", "cgd"):
        raise ValueError(f"kind must be 'cft' or 'cgd', got {kind!r}")
    path = Path(path)
    prefix = f"{path.stem}-" if id_prefix is None else id_prefix
    pattern = _CFT_INPUT if kind == "cft" else _CGD_INPUT
    records = []
    for i, row in enumerate(_read_rows(path)):
        rid = f"{prefix}{i}"
        where = f"{path}: row {i} (record {rid!r})"
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("input"), str)
            or not isinstance(row.get("output"), str)
        ):
            raise RecordError(f"{where}: expected an object with string 'input' and 'output'")
        m = pattern.match(row["input"])
        if m is None:
            raise RecordError(f"{where}: input does not match the {kind.upper()} layout")
        meta = {"source": str(path), "format": f"alpaca-{kind}", "instruction": row.get("instruction", "")}
        output = row["output"].strip()
        if kind == "cft":
            critique = re.sub(r"^Critique:\s*\n?", "", output)
            rec = CritiqueRecord(
                id=rid,
                problem=m["q"].strip(),
                student_answer=m["s"].strip(),
                critique=critique,
                metadata=meta,
            )
        else:
            rec = CritiqueRecord(
                id=rid,
                problem=m["q"].strip(),
                student_answer=m["a"].strip(),
                critique=m["c"].strip(),
                refined_answer=output,
                metadata=meta,
            )
        if not rec.problem:
            raise RecordError(f"{where}: empty question")
        records.append(rec)
    return records
