"""The request body as a dependency, so routes that parse FHIR can be plain `def` (run in the threadpool).

Reading the body is I/O and stays on the event loop; parsing and validating it (CPU, up to seconds for a
large Bundle) must not, or every route of every service in the process waits, `/healthz` included.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request


async def raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]
