"""Serve one benchmark target under uvicorn on a loopback port (started by benchmarks/harness.Server).

    python benchmarks/serve.py admissions|notifications|lean|bare PORT

Services are configured by the environment, as `relais serve` is (RELAIS_DATA_DIR, KAFKA_BOOTSTRAP_SERVERS...).
`bare` is a FastAPI app with one endpoint that reads the same body and answers a small JSON: the ceiling
the intake rate is compared with. `lean` is the essential work alone (benchmarks/lean.py), the reference the
intake must reach 70 % of.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bare/fhir/$process-message")
    async def process_message(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"resourceType": "OperationOutcome", "received": len(body)})

    return app


def service_app(name: str) -> FastAPI:
    from relais.services import bootstrapper

    # Only for profiling: the HTTP path alone, without the relay and consumers competing in the process.
    return bootstrapper(name)(run_workers=not os.environ.get("RELAIS_BENCH_NO_WORKERS")).app


def main() -> None:
    target, port = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING)
    if target == "bare":
        app = bare_app()
    elif target == "lean":
        from benchmarks.lean import lean_app

        app = lean_app(Path(os.environ["RELAIS_DATA_DIR"]) / "lean.sqlite")
    else:
        app = service_app(target)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
