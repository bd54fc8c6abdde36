"""One transient progress bar for every iterative backend (rich).

Each backend shows its label, ``unit completed/total`` and a few named
numbers (GBP's belief change, VI's loss, LM's cost and lambda); the bar
disappears when the fit ends, so the summary table is what stays.
"""

from __future__ import annotations

from typing import Any


class ProgressBar:
    def __init__(self, label: str, total: int, unit: str, fields: dict[str, tuple[str, float]]):
        """``fields``: name -> (format spec, value shown before the first update)."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._keys = tuple(f"f{i}" for i in range(len(fields)))  # rich field keys; the names are only shown
        shown = [TextColumn(f"{name} {{task.fields[{key}]:{spec}}}")
                 for key, (name, (spec, _)) in zip(self._keys, fields.items())]
        self.p = Progress(
            TextColumn(label), BarColumn(), TextColumn(f"{unit} {{task.completed}}/{{task.total}}"), *shown,
            TimeElapsedColumn(), transient=True,
        )
        firsts = {k: first for k, (_, first) in zip(self._keys, fields.values())}
        self.task = self.p.add_task(label, total=total, **firsts)
        self.p.start()

    def update(self, completed: int, *values: Any) -> None:
        """``values`` in the order of the fields (what the engines' callbacks pass)."""
        self.p.update(self.task, completed=completed, **dict(zip(self._keys, values)))

    def close(self) -> None:
        self.p.stop()


def progress_bar(
    enabled: bool, label: str, total: int, unit: str, fields: dict[str, tuple[str, float]]
) -> ProgressBar | None:
    return ProgressBar(label, total, unit, fields) if enabled else None
