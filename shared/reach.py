"""A hospital message that reaches nobody says so: a warning in its response, and a metric for the administrator."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from shared.fhir.outcome import issue

# Labels are the service and the event only: never anything about the patient.
UNROUTED = Counter(
    "relais_messages_unrouted_total", "Hospital messages accepted that reached no recipient", ["service", "event"]
)
NOBODY = (
    "the message was recorded but reached nobody: no treating team, CPTS or DAC is known for this patient "
    "(a foreign or missing address routes on nothing); the administrator sees it in relais_messages_unrouted_total"
)


def nobody_reached(service: str, event: str) -> dict[str, Any]:
    """Count the unrouted message and return the warning issue for its response."""
    UNROUTED.labels(service=service, event=event).inc()
    return issue("warning", "informational", NOBODY)
