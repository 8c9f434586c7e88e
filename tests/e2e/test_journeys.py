"""The demo's journeys against the four services as processes, on PostgreSQL and Kafka (Tansu), over HTTP.

The journeys (relais.demo.Scenario) run once for the module; each test then reads the organisations' feeds
itself, over HTTP, from where they stood before the run, and checks one property of the routing.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

import httpx
import pytest

from relais.demo import FeedItem, RelaisHttp, Scenario, load_territory, register
from tests.e2e.harness import RelaisProcesses, relais_executable
from tests.infra.brokers import TansuBroker

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(300)]

MINIMISED_FIELDS = {"event", "patient_key", "commune", "age_band", "occurred_at", "recorded_at"}
ORGANISATIONAL_FIELDS = {"event", "commune", "occurred_at", "recorded_at"}


@pytest.fixture(scope="module")
def broker():
    # A broker of its own: the session's Tansu holds other tests' care-team messages.
    tansu = TansuBroker()
    tansu.start()
    yield tansu
    tansu.close()


@pytest.fixture(scope="module")
def relais(postgres, broker, tmp_path_factory):
    processes = RelaisProcesses(postgres, broker, tmp_path_factory.mktemp("e2e-journeys"))
    try:
        yield processes.start()
    finally:
        processes.close()


@pytest.fixture(scope="module")
def journeys(relais):
    territory = load_territory("e2e-journeys")
    tokens = register(territory, relais.directory)
    http = RelaisHttp(relais.urls)
    scenario = Scenario(http, territory, tokens, timeout=45)
    try:
        scenario.run()
    except Exception as exc:
        pytest.fail(f"journeys failed: {exc}\n{relais.logs()}")
    steps = ", ".join(f"{k}: {v:.1f}" for k, v in scenario.timings.items())
    print(f"\nservices started in {relais.start_seconds:.1f} s; journey steps (s): {steps}")
    yield scenario
    http.close()


def feed(relais, scenario: Scenario, key: str) -> list[FeedItem]:
    """The organisation's feed since the run began, read over HTTP by the test itself."""
    items, after = [], scenario.start_cursors[key]
    while True:
        response = httpx.get(
            f"{relais.url('notifications')}/notifications/feed",
            params={"after": after, "limit": 200},
            headers={"Authorization": f"Bearer {scenario.tokens[key]}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        bundle = response.json()
        page = [FeedItem.parse(entry["resource"]) for entry in bundle.get("entry", [])]
        if not page:
            return items
        items.extend(page)
        after = page[-1].resource["parameter"][1]["valueString"]


def text(items: list[FeedItem]) -> str:
    return json.dumps([i.resource for i in items], ensure_ascii=False)


def test_each_organisation_receives_what_the_routing_table_says_and_nothing_more(relais, journeys):
    counts = {key: dict(Counter(i.event for i in feed(relais, journeys, key))) for key in journeys.tokens}
    assert counts == {
        "hospital": {"handoff.proposed": 2, "handoff.accepted": 1, "orientation.accepted": 1},
        "msp-monthureux": {
            "admission.recorded": 1,
            "discharge.recorded": 1,
            "handoff.proposed": 1,
            "handoff.accepted": 1,
            "snp.requested": 1,
            "snp.offered": 1,
        },
        "msp-lamarche": {
            "admission.recorded": 2,
            "discharge.recorded": 1,
            "handoff.proposed": 1,
            "orientation.assigned": 1,
            "orientation.accepted": 1,
        },
        "cabinet-vittel": {"snp.offered": 1},
        "cpts": {
            "admission.recorded": 1,
            "discharge.recorded": 1,
            "orientation.requested": 1,
            "orientation.accepted": 1,
            "snp.requested": 2,
            "snp.offered": 2,
        },
        "dac": {"discharge.recorded": 1},
        "sas": {},
        "admin": {},
    }


def test_paul_oriented_by_the_cpts_and_accepted_by_an_msp_is_readmitted_to_that_msp_only(relais, journeys):
    paul = journeys.territory.people["paul"]
    readmission = f"{journeys.encounter_key('paul')}-2"
    lamarche = feed(relais, journeys, "msp-lamarche")
    assigned = next(i for i in lamarche if i.event == "orientation.assigned")
    assert assigned.detail == "minimised" and paul.nir not in json.dumps(assigned.resource)
    accepted = next(i for i in lamarche if i.event == "orientation.accepted")
    assert accepted.detail == "full"
    admitted = [i for i in lamarche if i.event == "admission.recorded" and i.subject == readmission]
    assert len(admitted) == 1 and admitted[0].detail == "full"
    assert admitted[0].payload_resources("Patient")[0]["identifier"][0]["value"] == paul.nir
    cpts = feed(relais, journeys, "cpts")
    assert [i.event for i in cpts if i.event.startswith("admission.")] == ["admission.recorded"]  # the first one
    assert {i.detail for i in cpts if i.event.startswith("orientation.")} == {"minimised"}


def test_the_treating_team_gets_the_full_clinical_message_of_its_own_patient_only(relais, journeys):
    people = journeys.territory.people
    items = feed(relais, journeys, "msp-monthureux")
    admission = next(i for i in items if i.event == "admission.recorded")
    assert admission.detail == "full"
    assert admission.subject == journeys.encounter_key("jeanne")
    patient = admission.payload_resources("Patient")[0]
    assert patient["identifier"][0]["value"] == people["jeanne"].nir
    assert patient["name"][0]["family"] == "THIÉBAUT"
    assert [c["code"]["coding"][0]["code"] for c in admission.payload_resources("Condition")] == ["I50.0"]
    discharge = next(i for i in items if i.event == "discharge.recorded")
    assert discharge.detail == "full"
    assert discharge.payload_resources("Task"), "the discharge carries the handoff and follow-up Tasks"
    # Nothing about the other patients reaches this MSP.
    assert people["paul"].nir not in text(items) and people["marcel"].nir not in text(items)
    assert "COLIN" not in text(items) and "GRANDJEAN" not in text(items)


def test_the_handoff_is_proposed_and_accepted_on_both_sides(relais, journeys):
    task = journeys.handoffs["jeanne"]
    for key in ("msp-monthureux", "hospital"):
        accepted = [i for i in feed(relais, journeys, key) if i.event == "handoff.accepted"]
        assert [i.subject for i in accepted] == [task]
        assert accepted[0].payload_resources("Task")[0]["status"] == "accepted"
    proposed = {i.subject for i in feed(relais, journeys, "hospital") if i.event == "handoff.proposed"}
    assert task in proposed and len(proposed) == 2


def test_the_cpts_gets_minimised_and_organisational_data_only(relais, journeys):
    items = feed(relais, journeys, "cpts")
    body = text(items)
    for person in journeys.territory.people.values():
        assert person.nir not in body
        assert person.family not in body and person.given not in body
        for code, display in person.conditions:
            assert code not in body and display not in body
    assert "HUMBERT" not in body  # the hospital referent
    for item in items:
        assert item.detail in ("minimised", "organisational")
        allowed = MINIMISED_FIELDS if item.detail == "minimised" else ORGANISATIONAL_FIELDS
        assert set(item.payload) <= allowed, item.payload
    paul = [i for i in items if i.event.startswith(("admission", "discharge"))]
    assert {i.subject.split("/")[0] for i in items if i.event.startswith("orientation.")} == {"Task"}
    # The CPTS follows Paul under opaque Relais references; the hospital's encounter number never reaches it.
    assert paul and all(i.subject and i.subject.startswith(("Admission/", "Discharge/")) for i in paul)
    assert journeys.encounter_key("paul") not in body
    assert {i.payload["age_band"] for i in paul} == {"60-74"}


def test_only_the_complex_case_reaches_the_dac(relais, journeys):
    items = feed(relais, journeys, "dac")
    assert [(i.event, i.detail, i.subject) for i in items] == [
        ("discharge.recorded", "full", journeys.encounter_key("marcel"))
    ]
    patient = items[0].payload_resources("Patient")[0]
    assert patient["identifier"][0]["value"] == journeys.territory.people["marcel"].nir
    assert journeys.territory.people["jeanne"].nir not in text(items)


def test_snp_requests_go_to_the_own_team_first_then_to_the_territory_pool(relais, journeys):
    mine = [i for i in feed(relais, journeys, "msp-monthureux") if i.event.startswith("snp.")]
    assert {i.event for i in mine} == {"snp.requested", "snp.offered"}
    assert all(i.detail == "full" for i in mine)
    pool = feed(relais, journeys, "cabinet-vittel")
    assert [i.event for i in pool] == ["snp.offered"]
    appointment = pool[0].payload_resources("Appointment")
    assert appointment and appointment[0]["status"] in ("pending", "proposed")
    # The SAS itself and the administrator are told nothing.
    assert feed(relais, journeys, "sas") == [] and feed(relais, journeys, "admin") == []


def test_relais_demo_command_drives_the_processes_on_postgres_and_kafka(relais, journeys, tmp_path):
    env = {
        **relais.env,
        "COLUMNS": "200",
        "RELAIS_AUTH_DATABASE_URL": relais.database_url,
        "RELAIS_AUTH_DATABASE_SCHEMA": "auth",
    }
    urls = [f"--url={name}={url}" for name, url in relais.urls.items()]
    result = subprocess.run(
        [relais_executable(), "demo", *urls, "--timeout", "45"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {
        m.group(1).strip(): int(m.group(2))
        for m in re.finditer(r"^│ ([^│]+?)\s*│ \w+\s*│\s+(\d+) │", result.stdout, re.MULTILINE)
    }
    assert rows["CPTS de la Plaine"] == 8 and rows["DAC des Vosges"] == 1
    assert rows["MSP de Monthureux-sur-Saône"] == 6 and rows["SAS des Vosges (régulation libérale)"] == 0
