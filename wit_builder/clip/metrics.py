"""Training metrics: rank 0's JSONL file and TensorBoard writer, and per-window rates."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from wit_builder.clip.data import Batch


class MetricsLog:
    """Rank 0's ``metrics.jsonl`` and TensorBoard writer (both appended to on resume)."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = (out / "metrics.jsonl").open("a") if enabled else None
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON line; its numbers as TensorBoard scalars)."""
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items():
            if isinstance(value, int | float) and key != "step":
                self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()


class Window:
    """Throughput, data-wait time and skipped samples since the last log line."""

    def __init__(self) -> None:
        self.start, self.steps, self.data_wait = time.perf_counter(), 0, 0.0
        self.skipped: Counter[str] = Counter()

    def record(self, micro: list[Batch], waited: float) -> None:
        """Count one optimizer step made of `micro` batches, after `waited` seconds."""
        self.steps += 1
        self.data_wait += waited
        for batch in micro:
            self.skipped.update(batch.skipped)

    def summary(self, samples_per_step: int) -> dict[str, Any]:
        """The window's figures; starts a new window."""
        elapsed = time.perf_counter() - self.start
        out = {"samples_per_s": self.steps * samples_per_step / elapsed,
               "data_wait_s": self.data_wait, "skipped": dict(self.skipped)}
        self.__init__()
        return out
