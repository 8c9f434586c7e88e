"""The one error of `relais demo`: a call failed or a notification did not arrive in time."""

from __future__ import annotations


class DemoError(RuntimeError):
    """The demo could not complete: a call failed or a notification did not arrive in time."""
