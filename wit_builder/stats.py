"""Per-stage row accounting: rows in, rows out, and drops by reason.

Every stage owns one `StageStats`; it is logged as a table at the end of the run and written
to `stats.json` and into the `_SUCCESS` marker, so no row disappears without a reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from wit_builder.terminal import safe


@dataclass
class StageStats:
    """Counters for one stage run.

    `rows_in`/`rows_out` count the stage's unit of work (pages, records, pairs...);
    `drops` maps a short snake_case reason to the number of units dropped for it;
    `extra` holds any other figure worth keeping (per-source sizes, timings);
    `notices` are lines a user must see although nothing failed (skipped input files,
    truncated records): printed with the summary and kept in `stats.json`.
    """

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def notice(self, line: str) -> None:
        """Add a line for the user to the summary (see class docstring)."""
        self.notices.append(line)

    def drop(self, reason: str, n: int = 1) -> None:
        """Record `n` units dropped for `reason`."""
        if n:
            self.drops[reason] += n

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, drops sorted by reason for stable files."""
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "drops": dict(sorted(self.drops.items())),
            **({"notices": self.notices} if self.notices else {}),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        """The inverse of `to_dict`."""
        known = {"stage", "rows_in", "rows_out", "drops", "notices"}
        return cls(data["stage"], data["rows_in"], data["rows_out"],
                   Counter(data.get("drops", {})),
                   {k: v for k, v in data.items() if k not in known},
                   list(data.get("notices", [])))

    def print(self, console: Console | None = None) -> None:
        """Render the counters as a rich table (stderr by default)."""
        table = Table(title=f"{self.stage}: rows in {self.rows_in:,} → out {self.rows_out:,}")
        table.add_column("drop reason")
        table.add_column("rows", justify="right")
        for reason, n in sorted(self.drops.items()):
            table.add_row(safe(reason), f"{n:,}")
        console = console or Console(stderr=True)
        console.print(table)
        for line in self.notices:
            console.print(f"[yellow]note:[/] {safe(line)}", highlight=False)
