"""Log policy: no patient data at any level (docs/privacy.md, "Logs").

Three guards, installed once per process by :func:`install_log_policy` (every service runtime and the CLI):

* exceptions are logged by class and frames only: their text may quote a value being processed (a NIR, a
  birth date), so an exception passed as an argument becomes its class name and a traceback loses its message;
* the broker client's loggers stay at WARNING whatever the root level, since kafka-python logs whole record
  values at DEBUG;
* request lines in access logs lose their query string (search parameters may name a patient).

SQL statement parameters are kept out of error texts by the engines (``hide_parameters=True``).
"""

from __future__ import annotations

import logging
import threading
import traceback
from types import TracebackType
from typing import Any

# kafka-python narrates produced and fetched records (values included) at DEBUG.
QUIET_LOGGERS: tuple[str, ...] = ("kafka",)
_ACCESS_LOGGERS = frozenset({"uvicorn.access"})
_WITHHELD = "message withheld: it may quote patient data"

_lock = threading.Lock()
_installed = False


def exception_summary(exc: BaseException) -> str:
    """What may be logged of an exception: its class, never its text."""
    return type(exc).__name__


def _scrubbed_traceback(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    kind, _value, tb = exc_info
    frames = "".join(traceback.format_tb(tb)) if tb is not None else ""
    return f"Traceback (most recent call last):\n{frames}{kind.__name__} ({_WITHHELD})"


def _scrub_arg(value: Any, access: bool) -> Any:
    if isinstance(value, BaseException):
        return exception_summary(value)
    if access and isinstance(value, str) and "?" in value:
        return value.split("?", 1)[0] + "?…"
    return value


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Apply the policy to one record (exception args, traceback text, access-log query strings)."""
    access = record.name in _ACCESS_LOGGERS
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_arg(arg, access) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _scrub_arg(arg, access) for key, arg in record.args.items()}
    if isinstance(record.msg, BaseException):
        record.msg = exception_summary(record.msg)
    if record.exc_info and record.exc_info[0] is not None:
        # Formatters use exc_text when it is set: the traceback keeps its frames, never the message.
        record.exc_text = _scrubbed_traceback(record.exc_info)
    return record


def quiet_broker_loggers() -> None:
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def install_log_policy() -> None:
    """Install the record factory that scrubs every record, and quiet the broker client (idempotent)."""
    global _installed
    quiet_broker_loggers()
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return scrub(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True


def configure_logging(level: str) -> None:
    """The process's logging: root at ``level`` with the policy installed (the broker client stays quiet)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_policy()
