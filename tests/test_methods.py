"""Tests for trainers.records and trainers.methods: what each method trains on, and where the loss falls."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from harness.chat import render_prompt
from harness.prompts import PromptTemplates
from harness.tiny import byte_bpe_tokenizer
from trainers.loop import encode_example
from trainers.methods import (
    Method,
    MethodPrompts,
    build_examples,
    derangement,
    get_method,
    method_names,
)
from trainers.records import (
    CritiqueRecord,
    RecordError,
    import_alpaca,
    load_records,
    parse_conclusion,
    save_records,
)

METHODS = ["sft", "distill", "cft", "cgd", "cgd-generic", "cgd-irrelevant", "cgd-nocritique"]


def make_records(n: int, repeat_problems: int = 1) -> list[CritiqueRecord]:
    """n records; every `repeat_problems` consecutive records share a problem (several drafts per problem)."""
    out = []
    for i in range(n):
        k = i // repeat_problems
        out.append(
            CritiqueRecord(
                id=f"r{i}",
                problem=f"Compute {k} + {k + 2}.",
                gold=str(2 * k + 2),
                reference_solution=f"{k} + {k + 2} = {2 * k + 2}. \\boxed{{{2 * k + 2}}}",
                student_answer=f"{k} + {k + 2} = {2 * k + 1 + i}",
                critique=f"Critique {i}: step one adds {k} and {k + 2} wrongly.\nConclusion: wrong",
                refined_answer=f"Adding gives {2 * k + 2}. \\boxed{{{2 * k + 2}}}",
            )
        )
    return out


@pytest.fixture(scope="module")
def tok():
    prompts = MethodPrompts()
    corpus = [getattr(prompts, f.name) for f in fields(prompts)] + [PromptTemplates().math_user]
    recs = make_records(8)
    corpus = corpus * 4 + [
        " ".join([r.problem, r.reference_solution, r.critique, r.refined_answer]) for r in recs
    ]
    return byte_bpe_tokenizer(corpus)


def test_registry_lists_every_builtin_and_rejects_unknown_names():
    assert set(METHODS) <= set(method_names())
    for name in METHODS:
        m = get_method(name)
        assert m.name == name and m.description and "\n" not in m.description
    with pytest.raises(ValueError, match="known methods: .*cgd-irrelevant"):
        get_method("cgd-typo")


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls_exactly_on_target_plus_eos(tok, method):
    templates = PromptTemplates()
    for ex in build_examples(method, make_records(6), seed=3):
        feat, status = encode_example(tok, ex, templates=templates)
        assert status == "ok"
        ids, labels = feat["input_ids"], feat["labels"]
        n_prompt = labels.count(-100)
        assert all(lab == -100 for lab in labels[:n_prompt]), "loss tokens must be one suffix"
        assert labels[n_prompt:] == ids[n_prompt:]
        decode = lambda t: tok.decode(t, skip_special_tokens=False, clean_up_tokenization_spaces=False)  # noqa: E731
        assert decode(labels[n_prompt:]) == ex.target + tok.eos_token
        assert decode(ids[:n_prompt]) == render_prompt(tok, ex.context, templates)  # the evaluation prompt


@pytest.mark.parametrize("method, target", [("sft", "reference_solution"), ("distill", "refined_answer")])
def test_prompt_only_methods_train_on_the_evaluation_prompt(method, target):
    recs = make_records(3)
    for rec, ex in zip(recs, build_examples(method, recs), strict=True):
        assert ex.context == PromptTemplates().math_messages(rec.problem)
        assert ex.target == getattr(rec, target) and ex.record_id == rec.id


def test_context_and_target_of_each_critique_method():
    recs = make_records(4)
    by = {m: build_examples(m, recs, seed=0) for m in METHODS}
    for i, rec in enumerate(recs):
        text = {m: "\n".join(msg.content for msg in by[m][i].context) for m in METHODS}
        assert by["cft"][i].target == rec.critique
        assert (
            rec.problem in text["cft"]
            and rec.student_answer in text["cft"]
            and rec.critique not in text["cft"]
        )
        for m in ("cgd", "cgd-generic", "cgd-irrelevant", "cgd-nocritique"):
            assert by[m][i].target == rec.refined_answer
            assert rec.problem in text[m] and rec.student_answer in text[m]
            assert rec.refined_answer not in text[m]
        assert rec.critique in text["cgd"]
        assert MethodPrompts().generic_critique in text["cgd-generic"]
        assert "Feedback" not in text["cgd-nocritique"] and "Critique" not in text["cgd-nocritique"]


def test_cgd_generic_context_holds_nothing_of_the_records_critique():
    recs = make_records(5)
    for rec, ex in zip(recs, build_examples("cgd-generic", recs), strict=True):
        context = "\n".join(m.content for m in ex.context)
        own_lines = [line for line in rec.critique.splitlines() if line.strip()]
        assert not any(line in context for line in own_lines)
        assert f"Critique {rec.id[1:]}:" not in context


@pytest.mark.parametrize("n", [2, 3, 5, 17])
def test_cgd_irrelevant_never_uses_its_own_critique(n):
    recs = make_records(n)
    by_id = {r.id: r for r in recs}
    for seed in range(40):
        for rec, ex in zip(recs, build_examples("cgd-irrelevant", recs, seed=seed), strict=True):
            context = "\n".join(m.content for m in ex.context)
            assert rec.critique not in context
            donors = [r for r in recs if r.critique in context]
            assert len(donors) == 1 and donors[0].id != rec.id
        mapping = derangement(tuple(recs), seed)
        assert sorted(mapping.values()) == sorted(by_id)  # a permutation: every critique used once


def test_cgd_irrelevant_is_seeded():
    recs = make_records(9)
    a = build_examples("cgd-irrelevant", recs, seed=7)
    assert a == build_examples("cgd-irrelevant", recs, seed=7)
    assert any(build_examples("cgd-irrelevant", recs, seed=s) != a for s in range(8, 12))


def test_cgd_irrelevant_avoids_other_drafts_of_the_same_problem():
    recs = make_records(12, repeat_problems=3)
    for seed in range(30):
        for rid, donor in derangement(tuple(recs), seed).items():
            assert recs[int(rid[1:])].problem != recs[int(donor[1:])].problem
    with pytest.raises(ValueError, match="share one problem"):
        derangement(tuple(make_records(4, repeat_problems=3)), 0)


def test_cgd_irrelevant_with_one_record_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 records"):
        build_examples("cgd-irrelevant", make_records(1))


@pytest.mark.parametrize(
    "method, field_name",
    [
        ("cgd", "critique"),
        ("cft", "student_answer"),
        ("sft", "reference_solution"),
        ("distill", "refined_answer"),
    ],
)
def test_missing_field_names_the_first_bad_record_before_building_anything(method, field_name):
    recs = make_records(6)
    setattr(recs[2], field_name, None)
    setattr(recs[4], field_name, "   ")  # blank counts as missing too
    with pytest.raises(ValueError, match=rf"record 'r2' is missing required field\(s\) {field_name}") as err:
        build_examples(method, recs)
    assert "'r4'" not in str(err.value)

    calls = []

    class Spy(Method):
        name, description, required_fields = "spy", "counts calls", (field_name,)

        def example(self, record, ctx):
            calls.append(record.id)
            return get_method(method).example(record, ctx)

    with pytest.raises(ValueError, match="'r2'"):
        build_examples(Spy(), recs)
    assert calls == []  # validation happens before the first example


def test_duplicate_ids_are_rejected():
    recs = make_records(3)
    recs[2].id = "r0"
    with pytest.raises(ValueError, match="'r0' appears more than once"):
        build_examples("sft", recs)


def test_method_prompts_overrides():
    p = MethodPrompts.from_dict({"improve_user": "P={problem} A={answer} C={critique} \\boxed{}"})
    rec = make_records(1)[0]
    rec.problem = "What is {answer}?"  # a value mentioning a placeholder stays literal
    ex = build_examples("cgd", [rec], prompts=p)[0]
    assert (
        ex.context[-1].content == f"P=What is {{answer}}? A={rec.student_answer} C={rec.critique} \\boxed{{}}"
    )
    sys = MethodPrompts().with_overrides({"improve_system": "Be brief."})
    assert build_examples("cgd", [rec], prompts=sys)[0].context[0].content == "Be brief."
    with pytest.raises(ValueError, match="unknown method prompt key"):
        MethodPrompts.from_dict({"improve_usr": "x"})
    with pytest.raises(ValueError, match="lacks placeholder"):
        MethodPrompts.from_dict({"improve_user": "{problem} {answer}"})


def test_method_prompts_from_yaml(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text("critique_user: |\n  Q: {problem}\n  A: {answer}\n")
    assert MethodPrompts.from_yaml(path).critique_user == "Q: {problem}\nA: {answer}\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Step 1 is fine.\nConclusion: right", "right"),
        ("Bad.\nConclusion: wrong [END]", "wrong"),
        ("**Conclusion: Wrong**", "wrong"),
        ("Conclusion: **right**.", "right"),
        ("**Critique Conclusion: Correct**", "right"),
        ("Critique Conclusion: Incorrect", "wrong"),
        ("Conclusion: right\nOn reflection...\nConclusion: wrong", "wrong"),
        ("Conclusion: wrong\nSome closing remark.", "wrong"),
        ("Conclusion: partially right", None),
        ("The answer is right.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_conclusion(text, expected):
    assert parse_conclusion(text) == expected


def test_record_round_trip_and_errors(tmp_path):
    recs = make_records(3)
    recs[0].tokens = {"probe": 12, "critique": 30}
    recs[1].metadata = {"source": "toy", "nested": {"a": [1, 2]}}
    assert recs[0].conclusion == "wrong"  # derived from the critique
    path = tmp_path / "sub" / "records.jsonl"
    save_records(path, recs)
    assert load_records(path) == recs
    assert [p.name for p in path.parent.iterdir()] == ["records.jsonl"]  # no temp file left behind

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["critique"] = 5
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(RecordError, match=r"record 'r1' \(line 2\): 'critique' must be a string"):
        load_records(path)
    rows[1]["critique"], rows[2]["colour"] = "ok", "red"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(RecordError, match=r"record 'r2' \(line 3\): unknown field\(s\) \['colour'\]"):
        load_records(path)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(RecordError, match="'r0' \\(line 2\\) repeats the id of line 1"):
        load_records(path)
    path.write_text("{not json\n")
    with pytest.raises(RecordError, match="line 1 is not valid JSON"):
        load_records(path)
    with pytest.raises(RecordError, match="conclusion"):
        CritiqueRecord.from_dict({"id": "x", "problem": "p", "conclusion": "maybe"}, line=9)


def test_import_alpaca_cft_and_cgd_round_trip(tmp_path):
    cft_rows = [
        {
            "instruction": "Please critique whether the following solution to the question is correct.\n\n",
            "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5\n\n",
            "output": "Critique:\nThe sum is 4, not 5.\nConclusion: wrong [END]",
        },
        {
            "instruction": "Please critique whether the following solution to the question is correct.\n\n",
            "input": "Question:\nWhat is 3*3?\nSolution:\nIt is 9.\n",
            "output": "Correct multiplication.\n\nConclusion: right",
        },
    ]
    cft_path = tmp_path / "cft.json"
    cft_path.write_text(json.dumps(cft_rows))
    cft = import_alpaca(cft_path, kind="cft")
    assert [(r.id, r.problem, r.student_answer, r.conclusion) for r in cft] == [
        ("cft-0", "What is 2+2?", "2+2=5", "wrong"),
        ("cft-1", "What is 3*3?", "It is 9.", "right"),
    ]
    assert cft[0].critique == "The sum is 4, not 5.\nConclusion: wrong [END]"
    assert len(build_examples("cft", cft)) == 2

    cgd_rows = [
        {
            "instruction": "You are a knowledgeable science expert. ...",
            "input": f"Question: What is {i}+1?\n\nStudent's Initial Answer: It is {i}.\n\n"
            f"Critique: Off by one.\nConclusion: wrong",
            "output": f"{i}+1 = {i + 1}. \\boxed{{{i + 1}}}",
        }
        for i in range(3)
    ]
    cgd_path = tmp_path / "cgd.jsonl"
    cgd_path.write_text("\n".join(json.dumps(r) for r in cgd_rows) + "\n")
    cgd = import_alpaca(cgd_path, kind="cgd", id_prefix="w")
    assert cgd[1].id == "w1" and cgd[1].problem == "What is 1+1?" and cgd[1].student_answer == "It is 1."
    assert (
        cgd[1].critique == "Off by one.\nConclusion: wrong" and cgd[1].refined_answer == "1+1 = 2. \\boxed{2}"
    )
    assert cgd[1].conclusion == "wrong" and cgd[1].metadata["format"] == "alpaca-cgd"
    for method in ("cgd", "cgd-irrelevant", "distill"):
        assert len(build_examples(method, cgd)) == 3
    save_records(tmp_path / "r.jsonl", cft + cgd)
    assert load_records(tmp_path / "r.jsonl") == cft + cgd

    cgd_rows[2]["input"] = "no markers here"
    cgd_path.write_text("\n".join(json.dumps(r) for r in cgd_rows) + "\n")
    with pytest.raises(RecordError, match=r"row 2 \(record 'cgd-2'\): input does not match the CGD layout"):
        import_alpaca(cgd_path, kind="cgd")
