"""Every published PAM France example, sent by HAPI HL7 v2's MLLP client (a sender nobody here wrote), over plain
MLLP from a registered network and over MLLP/TLS with a client certificate: each gets its expected ACK.

The files are sent in path order over one connection, as a hospital's stream would be: the cancellations and
transfers of `cpage-meddatabridge` find (or not) the movements sent before them. A `.cr.er7` copy carries the
same MSH-10 as its original, so it gets the same, stored, ACK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hl7_support import EXAMPLES, FACILITIES, Hl7Relais, client_tls, started_relais
from tests.infra.hapi import Ack, send_with_hapi

# Expected MSA-1 per file (same for its `.cr.er7` copy); every other example is AA.
EXPECTED_NOT_AA: dict[str, tuple[str, str]] = {
    # A cancellation of an admission Relais never received: understood, not applicable; ERR names the stay.
    "cpage-meddatabridge/A11/1117927807": ("AE", "PID-18"),
    # A cancelled transfer of a stay whose admission the earlier A11 (1117926335) cancelled.
    "cpage-meddatabridge/A12/1117926329": ("AE", "PID-18"),
    # A cancelled transfer of a stay Relais never received.
    "cpage-meddatabridge/A12/1117926733": ("AE", "PID-18"),
    # Cancelled discharges Relais never received (1117925611 cancels the A03 1117925606 sent before it: AA).
    "cpage-meddatabridge/A13/1117925675": ("AE", "PID-18"),
    "cpage-meddatabridge/A13/1117926909": ("AE", "PID-18"),
    "cpage-meddatabridge/A13/1117927802": ("AE", "PID-18"),
}

FILES = sorted(path for path in EXAMPLES.rglob("*") if path.is_file()) if EXAMPLES.is_dir() else []


def expected(path: Path) -> tuple[str, str]:
    key = str(path.relative_to(EXAMPLES)).removesuffix(".cr.er7").removesuffix(".er7").removesuffix(".hl7")
    return EXPECTED_NOT_AA.get(key, ("AA", ""))


@pytest.fixture(scope="module", params=["mllp", "mllp+tls"])
def sent(request, tmp_path_factory) -> Iterator[tuple[Hl7Relais, dict[str, Ack]]]:
    tls = request.param == "mllp+tls"
    workdir = tmp_path_factory.mktemp("hapi")
    with started_relais(workdir, tls=tls) as relais:
        acks = send_with_hapi(relais.port, FILES, workdir, client_tls(relais) if tls else None)
        yield relais, {ack.path: ack for ack in acks}


if FILES:  # the published examples sit beside the repository (../shared/conformance) where a machine has them

    @pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(EXAMPLES)) for p in FILES])
    def test_each_published_example_gets_its_expected_ack_from_the_hapi_sender(sent, path):
        _relais, acks = sent
        ack = acks.get(str(path))
        assert ack is not None, f"HAPI printed no ACK for {path}"
        code, field = expected(path)
        assert ack.code == code, ack
        assert ack.control_id == control_id(path)  # MSA-2 echoes MSH-10
        if field:
            assert ack.error_field == field


def control_id(path: Path) -> str:
    return path.read_bytes().replace(b"\n", b"\r").split(b"\r", 1)[0].split(b"|")[9].decode()


def test_each_control_id_was_answered_and_stored_once(sent):
    relais, acks = sent
    assert len(acks) == len(FILES)
    assert set(FACILITIES) >= {"CHU-X", "CPAGE", "CPAGE_VBF3B"}
    # The facilities are one hospital's: one stored ACK per MSH-10, whatever the number of copies sent.
    assert relais.stored_acks() == len({control_id(path) for path in FILES})
