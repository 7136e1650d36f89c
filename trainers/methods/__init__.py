"""Training methods: each turns critique records into (context, target) training examples.

A method is a small class registered by name, in the style of lm-eval's task registry::

    @register_method("my-method")
    class MyMethod(Method):
        description = "x -> something: one line shown in listings"
        required_fields = ("problem", "refined_answer")   # CritiqueRecord fields it reads

        def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
            context = ctx.templates.math_messages(record.problem)
            return TrainingExample(context, record.refined_answer, record.id)

Put it in a new module of this package and import that module below, so that `get_method` finds it
(code outside the package can also register a method by importing its module before building examples).
`ctx` holds all records, the seed, the evaluation templates and the instruction prompts (`MethodPrompts`);
`build_examples` checks `required_fields` on every record before calling `example` on any.
The loss falls on `target` plus the end-of-turn token only; the loop never looks at the method.
"""

from trainers.methods import cft, cgd, sft  # noqa: F401  (registers the built-in methods)
from trainers.methods.base import (
    Method,
    MethodContext,
    MethodPrompts,
    TrainingExample,
    build_examples,
    get_method,
    method_names,
    register_method,
)
from trainers.methods.cgd import derangement

__all__ = [
    "Method",
    "MethodContext",
    "MethodPrompts",
    "TrainingExample",
    "build_examples",
    "derangement",
    "get_method",
    "method_names",
    "register_method",
]
