"""The base of every repository: it holds the unit of work's session and the queries, never a commit."""

from __future__ import annotations

from sqlmodel import Session


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: object) -> None:
        self.session.add(row)

    def flush(self) -> None:
        self.session.flush()
