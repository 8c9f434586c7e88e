"""What the demo prints: a progress bar over the journeys' steps, then what each organisation received."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relais.demo.journeys import Received, Scenario


def _progress_and_table(scenario: Scenario, console: Any) -> dict[str, Received]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    steps = scenario.steps
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=len(steps))
        for label, step in steps:
            progress.update(task, description=label)
            step()
            progress.advance(task)
        progress.update(task, description="done")
    return scenario.received


def received_table(received: Mapping[str, Received]) -> Any:
    from rich.table import Table

    table = Table(title="What each organisation received (its /notifications/feed)", show_lines=False)
    table.add_column("organisation")
    table.add_column("role")
    table.add_column("received", justify="right")
    table.add_column("events")
    table.add_column("detail")
    for item in received.values():
        org = item.organisation
        events = ", ".join(f"{event} ×{n}" for event, n in sorted(item.by_event.items())) or "—"
        details = ", ".join(sorted({i.detail for i in item.items})) or "—"
        table.add_row(org.name, org.role, str(item.count()), events, details)
    return table
