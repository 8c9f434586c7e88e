"""The HL7 v2 door's ACK discipline, sender binding, encodings and PAM France semantics, over a real MLLP socket
(the project's own PAM France fixtures, tests/hl7_support.pam_message)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from services.admissions.adapters.orm import Admission
from shared.db.tables import AuditEntry
from shared.hl7v2 import pam
from shared.hl7v2.message import parse_message
from shared.identifiers import INS_NIR_TEST
from tests import factories as f
from tests.hl7_support import Hl7Relais, MllpClient, err, msa, pam_message, started_relais


@pytest.fixture
def relais(tmp_path) -> Iterator[Hl7Relais]:
    with started_relais(tmp_path) as running:
        yield running


def send(relais: Hl7Relais, message: str | bytes, encoding: str = "utf-8") -> bytes | None:
    client = MllpClient(relais.port)
    try:
        return client.exchange(message.encode(encoding) if isinstance(message, str) else message)
    finally:
        client.close()


def admissions(relais: Hl7Relais) -> int:
    with relais.services[0].runtime.sessions() as session:
        return int(session.execute(select(func.count()).select_from(Admission)).scalar_one())


def audited(relais: Hl7Relais, reason: str) -> int:
    with relais.services[0].runtime.sessions() as session:
        rows = session.execute(select(AuditEntry)).scalars().all()
    return sum(1 for row in rows if (row.detail or {}).get("reason") == reason)


def test_an_admission_is_acknowledged_aa_after_it_is_recorded_and_msa_2_echoes_msh_10(relais):
    ack = send(relais, pam_message("A01", "CTRL-0001"))
    assert msa(ack)[1:3] == ["AA", "CTRL-0001"]
    assert admissions(relais) == 1


def test_the_same_control_id_again_gets_the_same_ack_and_is_processed_once(relais):
    first = send(relais, pam_message("A01", "CTRL-DUP"))
    again = send(relais, pam_message("A01", "CTRL-DUP", admitted="20240502090000"))
    assert first == again
    assert admissions(relais) == 1


def test_two_messages_on_one_connection_are_answered_in_order(relais):
    client = MllpClient(relais.port)
    client.send(pam_message("A01", "ORDER-1").encode())
    client.send(pam_message("A03", "ORDER-2", discharged="20240509110000").encode())
    assert [msa(client.receive())[2], msa(client.receive())[2]] == ["ORDER-1", "ORDER-2"]
    client.close()


def test_a_cancellation_of_an_admission_never_received_is_ae_naming_the_stay(relais):
    ack = send(relais, pam_message("A11", "CANCEL-1", zbe_action="CANCEL", original_trigger="A01"))
    assert msa(ack)[1] == "AE"
    assert err(ack) == "PID-18"
    assert b"204^" in ack  # HL7 table 0357: unknown key identifier


def test_a_cancellation_of_a_received_admission_is_aa(relais):
    assert msa(send(relais, pam_message("A01", "ADM-1")))[1] == "AA"
    assert msa(send(relais, pam_message("A11", "CXL-1", zbe_action="CANCEL", original_trigger="A01")))[1] == "AA"


def test_a_transfer_of_a_stay_relais_never_heard_of_records_the_stay(relais):
    assert msa(send(relais, pam_message("A02", "MOVE-1")))[1] == "AA"
    assert admissions(relais) == 1


def test_a_transfer_recorded_as_the_stay_whose_ack_was_lost_gets_aa_again(relais):
    from sqlalchemy import delete

    from shared.hl7v2.store import ACK_TABLE

    assert msa(send(relais, pam_message("A02", "MOVE-LOST")))[1] == "AA"
    with relais.door.store.engine.begin() as connection:  # a crash between the commit and the ACK row
        connection.execute(delete(ACK_TABLE))
    assert msa(send(relais, pam_message("A02", "MOVE-LOST")))[1] == "AA"
    assert admissions(relais) == 1


@pytest.mark.parametrize("trigger", ["A05", "A21", "A22", "A28", "A31", "A38", "A44", "A52", "A53", "A54", "A55"])
def test_a_pam_message_relais_takes_no_action_on_is_still_aa(relais, trigger):
    assert msa(send(relais, pam_message(trigger, f"NOOP-{trigger}")))[1] == "AA"
    assert admissions(relais) == 0


def test_an_update_of_a_stay_relais_never_received_is_aa(relais):
    ack = send(relais, pam_message("Z99", "UPD-1", zbe_action="UPDATE", original_trigger="A01"))
    assert msa(ack)[1] == "AA"


@pytest.mark.attack
def test_a_facility_not_bound_to_the_hospital_is_rejected_ar_and_audited(relais):
    ack = send(relais, pam_message("A01", "FOREIGN-1", facility="CHU-AILLEURS"))
    assert msa(ack)[1] == "AR"
    assert err(ack) == "MSH-4"
    assert admissions(relais) == 0
    assert audited(relais, "unbound sending facility") == 1


def test_a_message_that_is_not_adt_is_rejected_ar(relais):
    message = pam_message("A01", "ORU-1").replace("ADT^A01^ADT_A01", "ORU^R01^ORU_R01")
    ack = send(relais, message)
    assert msa(ack)[1] == "AR" and err(ack) == "MSH-9"


@pytest.mark.parametrize(
    ("charset", "encoding"),
    [("UNICODE UTF-8", "utf-8"), ("8859/1", "iso-8859-1"), ("8859/15", "iso-8859-15"), ("", "utf-8")],
)
def test_the_character_set_named_in_msh_18_is_read(relais, charset, encoding):
    message = pam_message("A01", f"CS-{charset or 'none'}", charset=charset, family="LEFÈVRE-ŒUF"
                          if encoding != "iso-8859-1" else "LEFÈVRE")
    assert msa(send(relais, message, encoding))[1] == "AA"


def test_bytes_that_are_not_the_declared_character_set_are_rejected_ar_naming_msh_18(relais):
    message = pam_message("A01", "BAD-UTF8", family="LEFÈVRE").encode("iso-8859-1")
    ack = send(relais, message)
    assert msa(ack)[1] == "AR" and err(ack) == "MSH-18"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_segments_separated_by_cr_lf_or_crlf_are_read(relais, separator):
    message = pam_message("A01", f"SEP-{len(separator)}{separator == chr(10)}").replace("\r", separator)
    assert msa(send(relais, message))[1] == "AA"


def test_enhanced_mode_gets_a_commit_ack_then_the_application_ack(relais):
    client = MllpClient(relais.port)
    client.send(pam_message("A01", "ENH-1", ack_modes=("AL", "AL")).encode())
    assert msa(client.receive())[1:3] == ["CA", "ENH-1"]
    assert msa(client.receive())[1:3] == ["AA", "ENH-1"]
    client.close()


def test_enhanced_mode_without_application_ack_gets_only_the_commit_ack(relais):
    client = MllpClient(relais.port)
    client.send(pam_message("A01", "ENH-2", ack_modes=("AL", "NE")).encode())
    assert msa(client.receive())[1] == "CA"
    client.send(pam_message("A01", "ENH-3", ack_modes=("AL", "NE"), nda="NDA-OTHER").encode())
    assert msa(client.receive())[1:3] == ["CA", "ENH-3"]  # the next frame is ENH-3's: no stray ACK between
    client.close()


def test_a_qualified_identity_names_the_patient_by_ins():
    message = parse_message(pam_message("A01", "ID-1").encode())
    bundle = pam.message_bundle(message, pam.read_facts(message), pam.Action.ADMIT, f.DEFAULT_FINESS)
    patient = bundle["entry"][2]["resource"]
    assert patient["identifier"][0] == {"system": INS_NIR_TEST, "value": f.DEFAULT_NIR}


@pytest.mark.parametrize("status", ["PROV", "VIDE", "VALI-not", ""])
def test_an_identity_not_qualified_keeps_the_patient_local_to_the_hospital(status):
    message = parse_message(pam_message("A01", "ID-2", identity_status=status).encode())
    bundle = pam.message_bundle(message, pam.read_facts(message), pam.Action.ADMIT, f.DEFAULT_FINESS)
    identifiers = bundle["entry"][2]["resource"]["identifier"]
    assert [i["system"] for i in identifiers] == ["urn:oid:1.2.250.1.71.4.2.2"]  # the hospital's PI only


def test_every_trigger_of_the_table_is_documented():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "hl7v2.md").read_text(encoding="utf-8")
    for trigger in pam.TRIGGERS:
        assert f"| {trigger} " in page, trigger


def test_stored_acks_are_purged_after_their_retention(relais):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from shared.hl7v2.store import ACK_TABLE
    from shared.retention import PurgeRule, RetentionWorker

    send(relais, pam_message("A28", "OLD-1"))
    send(relais, pam_message("A28", "NEW-1"))
    engine = relais.door.store.engine
    with engine.begin() as connection:
        old = datetime.now(UTC) - timedelta(days=100)
        connection.execute(update(ACK_TABLE).where(ACK_TABLE.c.control_id == "OLD-1").values(created_at=old))
    RetentionWorker(engine, [PurgeRule("hl7_ack", ACK_TABLE, "created_at", 90)]).run_once()
    assert relais.door.store.get(f.DEFAULT_FINESS, "OLD-1") is None
    assert relais.door.store.get(f.DEFAULT_FINESS, "NEW-1") is not None


def test_two_hospitals_may_use_the_same_control_id(relais):
    from shared.events import Role
    from shared.identifiers import make_finess

    other = make_finess("13000001")
    relais.directory.add(Role.HOSPITAL, other, "CH Autre", hl7_facilities=["CH-AUTRE"], hl7_networks=["127.0.0.1/32"])
    relais.door.senders.refresh()
    assert msa(send(relais, pam_message("A01", "SAME-ID")))[1] == "AA"
    assert msa(send(relais, pam_message("A01", "SAME-ID", facility="CH-AUTRE")))[1] == "AA"
    assert admissions(relais) == 2  # one stay per hospital: the id is unique per sender only


def test_many_connections_at_once_each_get_their_acks_in_order(relais):
    from concurrent.futures import ThreadPoolExecutor

    def one_sender(n: int) -> list[str]:
        client = MllpClient(relais.port, timeout=60)
        controls = [f"C{n}-{i}" for i in range(4)]
        for i, control in enumerate(controls):  # sent back to back, before reading any ACK
            client.send(pam_message("A01", control, nda=f"NDA-C{n}-{i}").encode())
        answered = [msa(client.receive())[2] for _ in controls]
        client.close()
        return answered

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one_sender, range(20)))
    assert results == [[f"C{n}-{i}" for i in range(4)] for n in range(20)]
    assert admissions(relais) == 80


def test_connections_beyond_the_limit_are_closed(tmp_path):
    with started_relais(tmp_path, max_connections=2) as running:
        held = [MllpClient(running.port), MllpClient(running.port)]
        assert msa(held[0].exchange(pam_message("A28", "HELD-0").encode()))[1] == "AA"
        assert msa(held[1].exchange(pam_message("A28", "HELD-1").encode()))[1] == "AA"
        extra = MllpClient(running.port)
        assert extra.exchange(pam_message("A28", "EXTRA").encode()) is None
        for client in [*held, extra]:
            client.close()


def test_the_expected_discharge_date_travels_with_the_admission(relais):
    message = parse_message(pam_message("A01", "PV2-1", expected_discharge="20240510120000").encode())
    bundle = pam.message_bundle(message, pam.read_facts(message), pam.Action.ADMIT, f.DEFAULT_FINESS)
    encounter = bundle["entry"][1]["resource"]
    assert encounter["extension"] == [{"url": pam.PLANNED_END, "valueDateTime": "2024-05-10T12:00:00+02:00"}]
    assert msa(send(relais, pam_message("A01", "PV2-2", expected_discharge="20240510120000")))[1] == "AA"
