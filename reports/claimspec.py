"""The papers' checkable claims as data: reports/claims/<paper-id>.yaml, loaded and validated into
dataclasses that reports.findings evaluates against a run folder.

A file is `{paper: <id>, title: ..., claims: [...]}`; a claim is `{id, text, source, paper, expr}` plus the
optional `student` (whose numbers `paper` quotes), `stands_in` (paper method -> run method used as its
analogue, e.g. CFT* -> cft) and `note`. `expr` kinds and their fields:

- difference: a, b (sides), op, threshold          a - b <op> threshold
- ordering: methods, relations, metric[, thresholds] m[i] - m[i+1] <relations[i]> thresholds[i] (default 0)
- ratio: a, b, op, factor                          a <op> factor * b
- within: a, b, tolerance                          |a - b| <= tolerance
- all_of: of (a list of difference/ratio/within)   every part
- loss_spike: spiky, smooth, early_fraction, factor  (see reports.findings)
- sweep: param, values, methods                    needs one run per value: not applicable on one run
- paper_only: needs                                no run can check it; `needs` says what it would take
- paper_arithmetic: paper, table, row, column[, check]  a cell of reports/paper_data/<paper>.yaml and its
  consistency checks (reports.paper_numbers; `check` picks one relation). No numbers and no `paper` field:
  they are read from that data at evaluation, so the paper's tables have one source of truth.

A side is `{method, metric}`; a metric is `{task: X}` (the task's headline score), `{task: X, metric: M}`
(M = pass@k / maj@k / avg@n from correctness, or a per-sample score key such as inst_strict),
`{group: g1|g2}` (reports.taskmap.PAPER_GROUPS), `{tasks: [...], name: ...}` (an ad-hoc average) or
`{task: X, stat: mean_completion_tokens}`. Score thresholds are fractions in [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml

from reports import paper_numbers
from reports.taskmap import PAPER_GROUPS

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
METHODS = ("base", "sft", "distill", "cft", "cgd", "cgd-generic", "cgd-irrelevant", "cgd-nocritique")
OPS = ("<", "<=", ">", ">=")
STATS = ("mean_completion_tokens",)
KINDS = (
    "difference",
    "ordering",
    "ratio",
    "within",
    "all_of",
    "loss_spike",
    "sweep",
    "paper_only",
    "paper_arithmetic",
)
_SAMPLED = re.compile(r"^(avg|pass|maj)@[1-9][0-9]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ClaimError(ValueError):
    """A claims file that does not validate; the message names the file, the claim id and the field."""


@dataclass(frozen=True)
class MetricRef:
    tasks: tuple[str, ...]  # the paper's task names (one for a task, the members for a group)
    group: str | None = None  # g1/g2 or an ad-hoc name: the score is the average over `tasks`
    metric: str | None = None  # None: the task's headline score
    stat: str | None = None  # a per-sample statistic instead of a score

    @property
    def label(self) -> str:
        base = self.group or self.tasks[0]
        return base + (f" {self.metric}" if self.metric else "") + (f" {self.stat}" if self.stat else "")


@dataclass(frozen=True)
class Side:
    method: str
    metric: MetricRef


@dataclass(frozen=True)
class Difference:
    a: Side
    b: Side
    op: str
    threshold: float


@dataclass(frozen=True)
class Ordering:
    methods: tuple[str, ...]
    relations: tuple[str, ...]
    thresholds: tuple[float, ...]
    metric: MetricRef


@dataclass(frozen=True)
class Ratio:
    a: Side
    b: Side
    op: str
    factor: float


@dataclass(frozen=True)
class Within:
    a: Side
    b: Side
    tolerance: float


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Difference | Ratio | Within, ...]


@dataclass(frozen=True)
class LossSpike:
    spiky: str
    smooth: str
    early_fraction: float
    factor: float


@dataclass(frozen=True)
class Sweep:
    param: str
    values: tuple[float, ...]
    methods: tuple[str, ...]


@dataclass(frozen=True)
class PaperOnly:
    needs: str


@dataclass(frozen=True)
class PaperArithmetic:
    paper: str  # a reports/paper_data id
    table: str
    row: str
    column: str
    check: str | None = None  # one relation of the cell (average, row_difference, ...); None: all of them


Expr = Difference | Ordering | Ratio | Within | AllOf | LossSpike | Sweep | PaperOnly | PaperArithmetic


@dataclass(frozen=True)
class Claim:
    paper_id: str
    id: str
    text: str
    source: str
    paper: Any  # the paper's own numbers: a mapping or a list
    expr: Expr
    student: str | None = None
    stands_in: tuple[tuple[str, str], ...] = ()
    note: str | None = None

    @property
    def kind(self) -> str:
        return _KIND_OF[type(self.expr)]


_KIND_OF: dict[type, str] = {
    Difference: "difference",
    Ordering: "ordering",
    Ratio: "ratio",
    Within: "within",
    AllOf: "all_of",
    LossSpike: "loss_spike",
    Sweep: "sweep",
    PaperOnly: "paper_only",
    PaperArithmetic: "paper_arithmetic",
}


class _Ctx:
    """Where a value came from, so every error names the file, the claim and the field."""

    def __init__(self, origin: str, claim_id: str | None):
        self.origin, self.claim_id = origin, claim_id

    def fail(self, field: str, msg: str) -> ClaimError:
        where = f"claim {self.claim_id!r}: " if self.claim_id is not None else ""
        return ClaimError(f"{self.origin}: {where}{field}: {msg}")

    def get(self, d: dict[str, Any], field: str, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in d:
            raise self.fail(f"{field}.{key}" if field else key, "missing")
        return self.check(d[key], f"{field}.{key}" if field else key, kind)

    def check(self, value: Any, field: str, kind: type | tuple[type, ...]) -> Any:
        numeric = kind is float or (isinstance(kind, tuple) and float in kind)
        if numeric and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = "number" if numeric else getattr(kind, "__name__", str(kind))
            raise self.fail(field, f"expected {names}, got {value!r}")
        return value

    def number(self, d: dict[str, Any], field: str, key: str, lo: float | None = None) -> float:
        value = float(self.get(d, field, key, float))
        if lo is not None and value < lo:
            raise self.fail(f"{field}.{key}", f"must be >= {lo}, got {value}")
        return value

    def method(self, value: Any, field: str) -> str:
        if value not in METHODS:
            raise self.fail(field, f"unknown method {value!r}; expected one of {list(METHODS)}")
        return str(value)

    def op(self, value: Any, field: str) -> str:
        if value not in OPS:
            raise self.fail(field, f"must be one of {list(OPS)}, got {value!r}")
        return str(value)


def _metric(ctx: _Ctx, raw: Any, field: str) -> MetricRef:
    d = ctx.check(raw, field, dict)
    allowed = {"task", "group", "tasks", "name", "metric", "stat"}
    if extra := sorted(set(d) - allowed):
        raise ctx.fail(field, f"unknown keys {extra}")
    sources = [k for k in ("task", "group", "tasks") if k in d]
    if len(sources) != 1:
        raise ctx.fail(field, f"needs exactly one of task, group, tasks (got {sources or 'none'})")
    group: str | None = None
    if "task" in d:
        tasks: tuple[str, ...] = (ctx.get(d, field, "task", str),)
    elif "group" in d:
        group = ctx.get(d, field, "group", str)
        if group not in PAPER_GROUPS:
            raise ctx.fail(f"{field}.group", f"unknown group {group!r}; expected one of {list(PAPER_GROUPS)}")
        tasks = PAPER_GROUPS[group]
    else:
        listed = ctx.get(d, field, "tasks", list)
        if not listed or not all(isinstance(t, str) for t in listed):
            raise ctx.fail(f"{field}.tasks", "must be a non-empty list of task names")
        tasks, group = tuple(listed), ctx.get(d, field, "name", str)
    for t in tasks:
        if not _NAME.match(t):
            raise ctx.fail(field, f"bad task name {t!r}")
    metric = ctx.check(d["metric"], f"{field}.metric", str) if "metric" in d else None
    if metric is not None and not (_SAMPLED.match(metric) or _NAME.match(metric)):
        raise ctx.fail(f"{field}.metric", f"expected pass@k, maj@k, avg@n or a score name, got {metric!r}")
    stat = ctx.check(d["stat"], f"{field}.stat", str) if "stat" in d else None
    if stat is not None and stat not in STATS:
        raise ctx.fail(f"{field}.stat", f"unknown stat {stat!r}; expected one of {list(STATS)}")
    if stat and metric:
        raise ctx.fail(field, "give metric or stat, not both")
    return MetricRef(tasks, group, metric, stat)


def _side(ctx: _Ctx, d: dict[str, Any], key: str) -> Side:
    raw = ctx.get(d, "expr", key, dict)
    return Side(
        ctx.method(raw.get("method"), f"expr.{key}.method"),
        _metric(ctx, raw.get("metric"), f"expr.{key}.metric"),
    )


def _expr(ctx: _Ctx, d: dict[str, Any], nested: bool = False) -> Expr:
    kind = d.get("kind")
    if kind not in KINDS or (nested and kind not in ("difference", "ratio", "within")):
        allowed = ["difference", "ratio", "within"] if nested else list(KINDS)
        raise ctx.fail("expr.kind", f"must be one of {allowed}, got {kind!r}")
    if kind == "difference":
        return Difference(
            _side(ctx, d, "a"),
            _side(ctx, d, "b"),
            ctx.op(d.get("op"), "expr.op"),
            ctx.number(d, "expr", "threshold"),
        )
    if kind == "ratio":
        if ctx.number(d, "expr", "factor") <= 0:
            raise ctx.fail("expr.factor", "must be > 0")
        return Ratio(
            _side(ctx, d, "a"),
            _side(ctx, d, "b"),
            ctx.op(d.get("op"), "expr.op"),
            ctx.number(d, "expr", "factor", 0.0),
        )
    if kind == "within":
        return Within(_side(ctx, d, "a"), _side(ctx, d, "b"), ctx.number(d, "expr", "tolerance", 0.0))
    if kind == "ordering":
        methods = [
            ctx.method(m, f"expr.methods[{i}]") for i, m in enumerate(ctx.get(d, "expr", "methods", list))
        ]
        relations = [
            ctx.op(r, f"expr.relations[{i}]") for i, r in enumerate(ctx.get(d, "expr", "relations", list))
        ]
        if len(methods) < 2 or len(relations) != len(methods) - 1:
            raise ctx.fail("expr.relations", f"needs len(methods) - 1 = {len(methods) - 1} relations")
        raw_thr = d.get("thresholds", [0.0] * len(relations))
        thresholds = [ctx.check(t, f"expr.thresholds[{i}]", float) for i, t in enumerate(raw_thr)]
        if len(thresholds) != len(relations):
            raise ctx.fail("expr.thresholds", "needs one threshold per relation")
        return Ordering(
            tuple(methods), tuple(relations), tuple(thresholds), _metric(ctx, d.get("metric"), "expr.metric")
        )
    if kind == "all_of":
        parts = ctx.get(d, "expr", "of", list)
        if not parts:
            raise ctx.fail("expr.of", "must list at least one part")
        subs = [_expr(ctx, ctx.check(p, f"expr.of[{i}]", dict), True) for i, p in enumerate(parts)]
        return AllOf(tuple(s for s in subs if isinstance(s, Difference | Ratio | Within)))
    if kind == "loss_spike":
        frac = ctx.number(d, "expr", "early_fraction", 0.0)
        if not 0.0 < frac < 1.0:
            raise ctx.fail("expr.early_fraction", f"must be in (0, 1), got {frac}")
        spiky, smooth = ctx.method(d.get("spiky"), "expr.spiky"), ctx.method(d.get("smooth"), "expr.smooth")
        return LossSpike(spiky, smooth, frac, ctx.number(d, "expr", "factor", 1.0))
    if kind == "sweep":
        values = [
            ctx.check(v, f"expr.values[{i}]", float) for i, v in enumerate(ctx.get(d, "expr", "values", list))
        ]
        methods = [
            ctx.method(m, f"expr.methods[{i}]") for i, m in enumerate(ctx.get(d, "expr", "methods", list))
        ]
        return Sweep(ctx.get(d, "expr", "param", str), tuple(values), tuple(methods))
    if kind == "paper_only":
        return PaperOnly(ctx.get(d, "expr", "needs", str))
    return _paper_cell(ctx, d)


def _paper_cell(ctx: _Ctx, d: dict[str, Any]) -> PaperArithmetic:
    """A paper_arithmetic expr: a cell that must exist in reports/paper_data (numbers stay there)."""
    if extra := sorted(set(d) - {"kind", "paper", "table", "row", "column", "check"}):
        raise ctx.fail("expr", f"unknown keys {extra} (the paper's numbers are read from reports/paper_data)")
    paper_id, table_id = ctx.get(d, "expr", "paper", str), ctx.get(d, "expr", "table", str)
    row, column = ctx.get(d, "expr", "row", str), ctx.get(d, "expr", "column", str)
    check = ctx.check(d["check"], "expr.check", str) if "check" in d else None
    if check is not None and check not in (kinds := list(get_args(paper_numbers.CheckKind))):
        raise ctx.fail("expr.check", f"must be one of {kinds}, got {check!r}")
    field = "expr.paper"  # the lookup that fails names the field
    try:
        paper = paper_numbers.load_paper(paper_id)
        field = "expr.table"
        table = paper.table(table_id)
        field = "expr.row"
        table.row(row)
        field = "expr.column"
        table.column(column)
    except KeyError as exc:
        raise ctx.fail(field, str(exc.args[0])) from None
    return PaperArithmetic(paper_id, table_id, row, column, check)


def parse_claims(doc: Any, origin: str = "<claims>") -> list[Claim]:
    """Validate a loaded claims document; raises ClaimError naming the claim id and the field."""
    top = _Ctx(origin, None)
    if not isinstance(doc, dict):
        raise ClaimError(f"{origin}: expected a mapping with paper and claims, got {type(doc).__name__}")
    paper_id = top.get(doc, "", "paper", str)
    raw_claims = top.get(doc, "", "claims", list)
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_claims):
        cid = raw.get("id") if isinstance(raw, dict) else None
        ctx = _Ctx(origin, cid if isinstance(cid, str) else f"#{i}")
        d = ctx.check(raw, "claim", dict)
        if extra := sorted(
            set(d) - {"id", "text", "source", "paper", "expr", "student", "stands_in", "note"}
        ):
            raise ctx.fail("claim", f"unknown keys {extra}")
        cid = ctx.get(d, "", "id", str)
        if cid in seen:
            raise ctx.fail("id", "duplicate id")
        seen.add(cid)
        expr = _expr(ctx, ctx.get(d, "", "expr", dict))
        if isinstance(expr, PaperArithmetic) and "paper" in d:
            raise ctx.fail("paper", "not for paper_arithmetic: its numbers are read from reports/paper_data")
        paper = {} if isinstance(expr, PaperArithmetic) else ctx.get(d, "", "paper", (dict, list))
        stands_in = ctx.check(d.get("stands_in", {}), "stands_in", dict)
        for pm, rm in stands_in.items():
            ctx.method(rm, f"stands_in.{pm}")
        claims.append(
            Claim(
                paper_id=paper_id,
                id=cid,
                text=ctx.get(d, "", "text", str),
                source=ctx.get(d, "", "source", str),
                paper=paper,
                expr=expr,
                student=ctx.check(d["student"], "student", str) if "student" in d else None,
                stands_in=tuple((str(k), str(v)) for k, v in stands_in.items()),
                note=ctx.check(d["note"], "note", str) if "note" in d else None,
            )
        )
    return claims


def claim_files() -> dict[str, Path]:
    """Paper id -> its claims file, in id order."""
    return {p.stem: p for p in sorted(CLAIMS_DIR.glob("*.yaml"))}


def load_claims_file(path: str | Path) -> list[Claim]:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClaimError(f"{path.name}: not valid YAML ({exc})") from None
    claims = parse_claims(doc, path.name)
    if claims and claims[0].paper_id != path.stem:
        raise ClaimError(f"{path.name}: paper {claims[0].paper_id!r} does not match the file name")
    return claims


def load_claims(paper_id: str) -> list[Claim]:
    files = claim_files()
    if paper_id not in files:
        raise ClaimError(f"no claims file for paper {paper_id!r}; have {list(files)}")
    return load_claims_file(files[paper_id])
