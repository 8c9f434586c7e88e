"""Relais end to end on a Kafka that enforces deploy/kafka/acls.yaml: each service is its own SCRAM principal.

The four services run as processes against the SASL/SCRAM Kafka 4 broker whose topics and ACLs were
applied by `deploy/kafka/apply.sh`; no service has Create, each may touch only its own topics and
consumer groups. The demo's journeys must give every organisation exactly what the routing table says
(the same counts as tests/e2e/test_journeys.py), and no service may log an authorization failure.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from relais.demo import FeedItem, RelaisHttp, Scenario, load_territory, register
from tests.e2e.harness import RelaisProcesses

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(360)]

EXPECTED = {
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
        "admission.recorded": 2,  # Marcel's, and Paul's readmission once the MSP accepted him through orientation
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


@pytest.fixture(scope="module")
def relais(postgres, kafka_secured, tmp_path_factory):
    # The ACLs name consumer groups under the default prefix `relais`; this broker serves this module only.
    processes = RelaisProcesses(postgres, kafka_secured, tmp_path_factory.mktemp("e2e-secured"),
                                extra_env={"RELAIS_CONSUMER_GROUP_PREFIX": "relais"})
    for name, service in processes.services.items():
        service.process.env = {**processes.env, **kafka_secured.relais_env(f"relais-{name}")}
    try:
        yield processes.start()
    finally:
        processes.close()


def feed_counts(relais, scenario: Scenario, key: str) -> dict[str, int]:
    items, after = [], scenario.start_cursors[key]
    while True:
        response = httpx.get(f"{relais.url('notifications')}/notifications/feed", params={"after": after, "limit": 200},
                             headers={"Authorization": f"Bearer {scenario.tokens[key]}"}, timeout=10)
        assert response.status_code == 200, response.text
        page = [FeedItem.parse(entry["resource"]) for entry in response.json().get("entry", [])]
        if not page:
            return dict(Counter(i.event for i in items))
        items.extend(page)
        after = page[-1].resource["parameter"][1]["valueString"]


def test_every_service_authenticated_as_its_own_principal_runs_the_journeys(relais):
    for name, service in relais.services.items():
        assert service.process.env["RELAIS_KAFKA_SASL_USERNAME"] == f"relais-{name}"
    territory = load_territory("e2e-secured")
    tokens = register(territory, relais.directory)
    http = RelaisHttp(relais.urls)
    scenario = Scenario(http, territory, tokens, timeout=60)
    try:
        scenario.run()
    except Exception as exc:
        pytest.fail(f"journeys failed on the secured Kafka: {exc}\n{relais.logs()}")
    finally:
        http.close()
    assert {key: feed_counts(relais, scenario, key) for key in scenario.tokens} == EXPECTED
    logs = "\n".join(service.log_path.read_text(errors="replace") for service in relais.services.values())
    assert "AuthorizationFailed" not in logs and "SaslAuthenticationFailed" not in logs, relais.logs()
