"""`relais demo --keep-running --port`: the territory stays up on the port asked, with one orientation left waiting
for the CPTS (Louise, discharged without a treating team), so a newcomer has something to do on the board."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console
from sqlalchemy import create_engine, text

from relais.demo import run_demo
from tests.infra.oidc import free_port


@pytest.mark.timeout(300)
def test_the_kept_territory_serves_on_the_port_asked_and_leaves_one_orientation_waiting(tmp_path):
    port = free_port()
    out = io.StringIO()
    stop = threading.Event()
    stop.set()  # asked to stop already: returns once the territory is seeded and the tokens printed
    run_demo(data_dir=tmp_path / "data", keep_running=True, stop=stop, port=port,
             console=Console(file=out, width=200))
    printed = out.getvalue()
    assert f"http://127.0.0.1:{port}/app/" in printed
    assert "one orientation waiting" in printed
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'discharge.sqlite'}")
    with engine.connect() as connection:
        states = [row[0] for row in connection.execute(text("SELECT status FROM discharge_orientation"))]
    engine.dispose()
    assert sorted(states) == ["completed", "requested"]  # Paul's, accepted by his new MSP; Louise's, waiting
