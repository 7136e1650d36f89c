"""Declared task tables: which benchmark group a task belongs to, and which real benchmark a toy task
stands in for. Findings, tables and figures read these, so a toy run is checked against the paper's claims
as an *analogue* (and says so) instead of silently passing for the real thing."""

from __future__ import annotations

#: Toy task -> the paper benchmark it is built to mirror (docs/toy-world.md): in-distribution maths,
#: harder out-of-distribution maths sampled at temperature, and format following.
ANALOGUES: dict[str, str] = {"toy_id": "math500", "toy_ood": "aime24", "toy_format": "ifeval"}

#: Benchmark groups in the paper's table layout: maths, general reasoning, general abilities.
GROUPS: dict[str, tuple[str, ...]] = {
    "math": (
        "math500",
        "minerva_math",
        "gsm8k",
        "olympiadbench",
        "amc23",
        "aime24",
        "aime25",
        "toy_id",
        "toy_ood",
    ),
    "reasoning": ("theoremqa", "gpqa_diamond", "mmlu_pro"),
    "general": ("ifeval", "toy_format", "bbh", "truthfulqa_mc", "musr", "humaneval"),
}

#: The paper's averages (PAPER.md §4): "Avg G1" and "Avg G2" of table A1/A2.
PAPER_GROUPS: dict[str, tuple[str, ...]] = {
    "g1": ("math500", "minerva_math", "gsm8k", "olympiadbench", "amc23"),
    "g2": ("theoremqa", "gpqa_diamond", "mmlu_pro"),
}

#: What a toy run's paper group stands for: G1 (the paper's maths average) is read, as an analogue, from the
#: in-distribution maths task alone; toy_ood mirrors AIME, which G1 does not average. G2 has no toy analogue.
GROUP_ANALOGUES: dict[str, tuple[str, ...]] = {"g1": ("toy_id",)}

#: Display names as the paper writes them.
DISPLAY: dict[str, str] = {
    "math500": "MATH-500",
    "minerva_math": "Minerva",
    "gsm8k": "GSM8K",
    "olympiadbench": "OlympiadB",
    "amc23": "AMC23",
    "aime24": "AIME24",
    "aime25": "AIME25",
    "theoremqa": "TheoremQA",
    "gpqa_diamond": "GPQA",
    "mmlu_pro": "MMLU-Pro",
    "ifeval": "IFEval",
    "bbh": "BBH",
    "truthfulqa_mc": "TruthfulQA",
    "musr": "MuSR",
    "humaneval": "HumanEval",
    "toy_id": "toy ID",
    "toy_ood": "toy OOD",
    "toy_format": "toy format",
}

METHOD_DISPLAY: dict[str, str] = {
    "base": "Base",
    "sft": "SFT",
    "distill": "Distilled SFT",
    "cft": "CFT",
    "cgd": "CGD",
}


def group_of(task: str) -> str:
    for group, members in GROUPS.items():
        if task in members:
            return group
    return "other"


def paper_name(task: str) -> str:
    """The real benchmark a task is (or stands in for)."""
    return ANALOGUES.get(task, task)


def is_analogue(task: str) -> bool:
    return task in ANALOGUES


def display(task: str) -> str:
    return DISPLAY.get(task, task)


def method_display(method: str) -> str:
    return METHOD_DISPLAY.get(method, method)
