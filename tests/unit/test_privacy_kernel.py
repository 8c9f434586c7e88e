"""The patient-data boundary's kernel rules: one key per INS person, commune codes only, small cells, log policy."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest

from services.snp.dashboard import dashboard, hidden_keys
from shared.communes import communes_for_postal_code
from shared.contracts import About, build_notification
from shared.events import TOPIC_NOTIFY_CPTS, EventType, Role
from shared.identifiers import INS_NIA, INS_NIR, INS_NIR_TEST, make_nir, patient_key
from shared.logs import install_log_policy, scrub
from shared.minimise import NotMinimised, assert_minimised, commune_code, minimise
from shared.routing import Detail, Recipient
from tests.unit.test_snp_domain import fact

SECRET = "s" * 40
NIR = make_nir(1, 62, 7, "88", 516, 42)


# --- one person, one key across the INS family (issue 11, item 4) -----------------------------------------


def test_the_ins_family_keys_one_person_on_the_normalised_nir():
    keys = {patient_key(system, NIR, SECRET) for system in (INS_NIR, INS_NIR_TEST, INS_NIA)}
    spaced = " ".join((NIR[:1], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]))
    keys.add(patient_key(INS_NIR, spaced, SECRET))
    assert len(keys) == 1


def test_a_local_identifier_with_the_same_digits_is_another_key():
    assert patient_key("urn:oid:1.2.250.1.71.4.2.7|chu", NIR, SECRET) != patient_key(INS_NIR, NIR, SECRET)


# --- commune: a code from the reference list, derived from the postal code (issue 11, item 2) ----------------


def test_the_commune_is_the_reference_code_of_the_postal_code_whatever_the_city_text():
    lowest = min(c.insee for c in communes_for_postal_code("88800"))
    assert commune_code("88800", "Vittel") == "88516"
    # Free text in the city field never leaves: it can only pick among the postal code's communes.
    assert commune_code("88800", "Jean DUPONT diabète") == lowest
    assert commune_code("88800", None) == lowest


def test_a_postal_code_shared_by_several_communes_takes_the_named_one_else_the_lowest_code():
    assert commune_code("88140", "CONTREXEVILLE") == "88114"
    assert commune_code("88140", "Bulgnéville") == "88079"
    assert commune_code("88140", "somewhere else") == "88003"


def test_an_unknown_postal_code_gives_no_commune():
    assert commune_code("99999", "Vittel") is None
    assert commune_code(None, "Vittel") is None


def test_free_text_in_the_commune_never_leaves_and_the_whitelist_refuses_it():
    minimal = minimise(
        {},
        event_type=EventType.ADMISSION_RECORDED,
        patient_key="a" * 32,
        commune="Jean DUPONT diabète",
        birth_date=date(1950, 1, 1),
        occurred_at=datetime(2024, 5, 2, tzinfo=UTC),
        recorded_at=datetime(2024, 5, 2, tzinfo=UTC),
    )
    assert minimal["commune"] is None
    with pytest.raises(NotMinimised):
        assert_minimised({**minimal, "commune": "Vittel"})


@pytest.mark.parametrize("detail", [Detail.MINIMISED, Detail.ORGANISATIONAL])
def test_no_hospital_identifier_reaches_a_minimised_or_organisational_recipient(detail):
    recipient = Recipient(Role.CPTS, "cpts-88", detail, TOPIC_NOTIFY_CPTS, "test")
    out = build_notification(
        recipient,
        EventType.ADMISSION_RECORDED,
        source_id="m1",
        about=About(
            patient_key="b" * 32,
            reference="Admission/r1",
            subject="https://chu.example/nda|NDA-CANARY-1",
            commune="Contrexéville NDA-CANARY-2",
            birth_date=date(1950, 1, 1),
        ),
        sender="750712184",
        occurred_at="2024-05-02T08:30:00+02:00",
        recorded_at="2024-05-02T08:35:00+02:00",
        full=lambda _id: {"CANARY": "full payload built"},
    )
    assert "CANARY" not in repr(out)
    assert out.data["subject"] == "Admission/r1"


# --- small cells (issue 11, item 6) ----------------------------------------------------------------------


def test_a_dashboard_cell_of_one_request_is_suppressed():
    facts = [fact("2h", "88516", 60, hour=9)] + [fact("48h", "88114", 60, hour=13) for _ in range(6)]
    board = dashboard(facts)  # default threshold: 5
    # Issue 19: a hidden cell keeps no label; secondary suppression hides 88114 too (7 - 6 would give 1 away).
    assert [row for row in board["by_commune"] if not row.get("suppressed")] == []
    (hidden,) = board["by_commune"]
    assert hidden["key"] is None and hidden["name"] is None and hidden["requests"] is None
    assert all(row["requests"] is None or row["requests"] >= 5 for row in board["by_hour"])
    assert all(row["hour"] is None for row in board["by_hour"] if row.get("suppressed"))
    assert all(row.get("requests") is None for row in board["by_urgency"] if row.get("suppressed"))


def test_cells_at_the_threshold_are_shown_and_empty_cells_are_not_listed():
    assert hidden_keys({"a": 5, "b": 7}, 5) == set()
    assert hidden_keys({0: 0, 1: 6}, 5) == set()
    board = dashboard([fact("48h", "88114", 60, hour=13) for _ in range(6)])
    assert board["by_hour"] == [{"hour": 14, "requests": 6}]  # 13:00 UTC is 14:00 in Paris


def test_suppressed_cells_together_reach_the_threshold():
    counts = {"a": 1, "b": 2, "c": 9, "d": 20}
    hidden = hidden_keys(counts, 5)
    assert hidden == {"a", "b", "c"}
    assert sum(counts[key] for key in hidden) >= 5


def test_the_threshold_is_a_setting(monkeypatch):
    from shared.settings import SnpSettings

    monkeypatch.setenv("RELAIS_SMALL_CELL_THRESHOLD", "11")
    assert SnpSettings(environment="test").small_cell_threshold == 11
    monkeypatch.delenv("RELAIS_SMALL_CELL_THRESHOLD")
    assert SnpSettings(environment="test").small_cell_threshold == 5


# --- logs (issue 11, item 5) -----------------------------------------------------------------------------


def _fail(nir: str, born: date) -> None:
    raise ValueError(f"patient {nir} born {born.isoformat()}")


def test_exceptions_are_logged_by_class_and_frames_never_by_text(caplog):
    install_log_policy()
    log = logging.getLogger("relais.test.privacy")
    with caplog.at_level(logging.DEBUG):
        try:
            _fail(NIR, date(1955, 3, 14))
        except ValueError as exc:
            log.warning("failed: %s", exc)
            log.exception("unhandled")
    assert "ValueError" in caplog.text
    assert NIR not in caplog.text and "1955-03-14" not in caplog.text


def test_the_broker_client_stays_quiet_even_at_debug(caplog):
    install_log_policy()
    logging.getLogger().setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kafka.producer.sender").debug("record value %s", "CANARY-KAFKA")
    assert "CANARY-KAFKA" not in caplog.text
    assert logging.getLogger("kafka").getEffectiveLevel() >= logging.WARNING


def test_access_log_lines_lose_their_query_string():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/notifications/disclosures?patient=x|{NIR}", "1.1", 200), None,
    )
    assert NIR not in scrub(record).getMessage()


@pytest.mark.parametrize("url", ["sqlite://", "postgresql://relais@127.0.0.1:1/relais"])
def test_statement_parameters_are_hidden_on_both_dialects(url):
    from shared.db.engine import make_engine

    engine = make_engine(url)  # no schema: nothing connects
    try:
        assert engine.hide_parameters is True
    finally:
        engine.dispose()
