"""The toy world: an offline, exactly-checkable reasoning domain for running the whole CGD pipeline on a CPU.

Importing this package registers the tasks toy_id, toy_ood and toy_format. See docs/toy-world.md.
"""

from tasks.toy import tasks as _tasks  # noqa: F401  (registers the tasks)
from tasks.toy.teacher import ExactToyTeacher
from tasks.toy.world import ToyWorldConfig

__all__ = ["ExactToyTeacher", "ToyWorldConfig"]
