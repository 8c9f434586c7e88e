"""The demo's journeys, step by step over HTTP, and what each organisation must receive from them."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from relais.demo.client import FeedItem, RelaisHttp, wait_until
from relais.demo.errors import DemoError
from relais.demo.resources import TASK_CODE_SYSTEM, availability, careteam, hospital_message, service_request
from relais.demo.territory import Organisation, Territory
from shared.clock import utcnow

# What each organisation of the scenario must receive, by event (the routing table applied to the journeys).
EXPECTED: dict[str, dict[str, int]] = {
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
        "admission.recorded": 2,  # Marcel's, then Paul's once the MSP accepted him through orientation
        "discharge.recorded": 1,
        "handoff.proposed": 1,
        "orientation.assigned": 1,
        "orientation.accepted": 1,
    },
    "cabinet-vittel": {"snp.offered": 1},
    "cpts": {
        "admission.recorded": 1,  # Paul's first admission only: his next one goes to his new team
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



@dataclass
class Received:
    """What one organisation received during this run."""

    organisation: Organisation
    items: list[FeedItem] = field(default_factory=list)

    def count(self, event: str | None = None) -> int:
        return sum(1 for i in self.items if event is None or i.event == event)

    @property
    def by_event(self) -> Counter:
        return Counter(i.event for i in self.items)


class Scenario:
    """The demo's journeys, step by step, over HTTP. `steps` drive a progress bar; `received` is the outcome."""

    def __init__(
        self,
        http: RelaisHttp,
        territory: Territory,
        tokens: Mapping[str, str],
        *,
        timeout: float = 30.0,
        run_tag: str | None = None,
    ) -> None:
        self.http = http
        self.territory = territory
        self.tokens = dict(tokens)
        self.timeout = timeout
        self.run_tag = run_tag or uuid.uuid4().hex[:8]
        self.now = utcnow().replace(microsecond=0)
        self.cursors: dict[str, str | None] = {}
        self.start_cursors: dict[str, str | None] = {}
        self.timings: dict[str, float] = {}
        self.received = {key: Received(org) for key, org in territory.organisations.items()}
        self.handoffs: dict[str, str] = {}
        self.orientations: dict[str, str] = {}
        self._mirror_base: dict[str, float] = {}
        self._mirror_changes = 0

    # helpers

    def nda(self, person: str) -> str:
        return f"NDA-{self.run_tag}-{person}"

    def encounter_key(self, person: str) -> str:
        return f"https://dpi.ch-ouest-vosgien.example/{self.territory.org('hospital').id}/nda|{self.nda(person)}"

    def refresh(self, key: str) -> Received:
        items, self.cursors[key] = self.http.feed(self.tokens[key], self.cursors.get(key))
        self.received[key].items.extend(items)
        return self.received[key]

    def expect(self, key: str, event: str, count: int = 1, subject: str | None = None) -> list[FeedItem]:
        """Wait until organisation `key` holds `count` notifications of `event` (about `subject`)."""
        org = self.territory.org(key)

        def matching() -> list[FeedItem]:
            return [
                i for i in self.refresh(key).items if i.event == event and (subject is None or i.subject == subject)
            ]

        def describe() -> str:
            seen = ", ".join(f"{e} ×{n}" for e, n in sorted(self.received[key].by_event.items())) or "nothing"
            about = f" about {subject}" if subject else ""
            return f"{org.name} ({org.id}) expected {count} × {event}{about}; it has received {seen}"

        def enough() -> list[FeedItem]:
            found = matching()
            return found if len(found) >= count else []

        return wait_until(enough, self.timeout, describe)

    # steps

    @property
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("feeds: where each organisation stands", self.start_feeds),
            ("territory: CPTS de la Plaine and DAC for the Ouest vosgien", self.set_territories),
            ("treating teams enrol their patients", self.enrol_patients),
            ("effecteurs publish SNP slots", self.publish_slots),
            ("discharge and SNP mirror the care teams", self.wait_for_mirrors),
            ("Jeanne: admission at the CH de l'Ouest vosgien", self.admit_jeanne),
            ("Jeanne: discharge, handoff to her MSP", self.discharge_jeanne),
            ("Jeanne: the MSP referent accepts the handoff", self.accept_jeanne),
            ("Paul (no treating team): admission and discharge", self.paul_without_team),
            ("Marcel: admission", self.admit_marcel),
            ("Marcel: complex discharge reaches the DAC", self.discharge_marcel),
            ("SAS: SNP requests placed", self.snp_requests),
            ("Paul: the CPTS finds his orientation Task and proposes the MSP de Lamarche", self.orient_paul),
            ("Paul: the MSP referent accepts him from its worklist", self.accept_paul),
            ("Paul: readmitted, the admission reaches his new MSP, not the CPTS", self.readmit_paul),
            ("read every organisation's feed", self.collect),
        ]

    def start_feeds(self) -> None:
        for key in self.territory.organisations:
            _, self.cursors[key] = self.http.feed(self.tokens[key], None)
        self.start_cursors = dict(self.cursors)
        self._mirror_base = {s: self.http.handled(s) for s in ("discharge", "snp")}

    def set_territories(self) -> None:
        body = {"cpts": self.territory.org("cpts").id, "dac": self.territory.org("dac").id}
        for postal_code in self.territory.postal_codes:
            self.http.call("admissions", "PUT", f"/territories/{postal_code}", self.tokens["admin"], body, fhir=False)
            self._mirror_changes += 1

    def enrol_patients(self) -> None:
        for person in self.territory.people.values():
            if person.team:
                self.http.call(
                    "admissions",
                    "POST",
                    "/fhir/CareTeam",
                    self.tokens[person.team],
                    careteam(self.territory, person),
                    expect=(202,),
                )
                self._mirror_changes += 1

    def publish_slots(self) -> None:
        for spec in self.territory.slots:
            team = self.territory.org(spec["team"])
            starts = [self.now + timedelta(minutes=spec["first_minutes"] + 30 * i) for i in range(spec["count"])]
            commune = self.territory.communes[spec["commune"]]
            tag = f"{self.run_tag}-{team.key}"
            self.http.call("snp", "POST", "/fhir", self.tokens[team.key], availability(team, commune, starts, tag))

    def wait_for_mirrors(self) -> None:
        # The care-team changes travel on relais.careteam; discharges and SNP requests route by the mirror.
        for service in ("discharge", "snp"):
            target = self._mirror_base[service] + self._mirror_changes
            wait_until(
                partial(self._mirrored_at_least, service, target),
                self.timeout,
                partial(self._mirror_progress, service, target),
            )

    def _mirrored_at_least(self, service: str, target: float) -> bool:
        return self.http.handled(service) >= target

    def _mirror_progress(self, service: str, target: float) -> str:
        return f"{service} mirrored {self.http.handled(service):.0f} of {target:.0f} care-team messages"

    def _admit(self, person: str, nda: str | None = None) -> None:
        message = hospital_message(
            self.territory,
            self.territory.people[person],
            event="ADM",
            nda=nda or self.nda(person),
            start=self.now - timedelta(days=5),
        )
        self.http.call("admissions", "POST", "/fhir/$process-message", self.tokens["hospital"], message)

    def _discharge(self, person: str, care_plan: bool = False) -> dict[str, Any]:
        message = hospital_message(
            self.territory,
            self.territory.people[person],
            event="SOR",
            nda=self.nda(person),
            start=self.now - timedelta(days=5),
            end=self.now - timedelta(hours=2),
            care_plan=care_plan,
        )
        return self.http.call("discharge", "POST", "/fhir/$process-message", self.tokens["hospital"], message)

    def admit_jeanne(self) -> None:
        self._admit("jeanne")
        self.expect("msp-monthureux", "admission.recorded", subject=self.encounter_key("jeanne"))

    def discharge_jeanne(self) -> None:
        self._discharge("jeanne", care_plan=True)
        self.expect("msp-monthureux", "discharge.recorded", subject=self.encounter_key("jeanne"))
        proposed = self.expect("msp-monthureux", "handoff.proposed")
        self.handoffs["jeanne"] = proposed[-1].subject or ""

    def accept_jeanne(self) -> None:
        task = self.handoffs["jeanne"]
        self.http.call("discharge", "POST", f"/fhir/Task/{task}/$accept", self.tokens["msp-monthureux"])
        self.expect("msp-monthureux", "handoff.accepted", subject=task)
        self.expect("hospital", "handoff.accepted", subject=task)

    def paul_without_team(self) -> None:
        self._admit("paul")
        self._expect_minimised("admission.recorded", "paul")
        self._discharge("paul")
        self._expect_minimised("discharge.recorded", "paul")

    def _expect_minimised(self, event: str, person: str) -> None:
        # The CPTS learns of the event under an opaque Relais reference, never the hospital's encounter number.
        for item in self.expect("cpts", event):
            if item.subject == self.encounter_key(person):
                raise DemoError(f"the CPTS received the hospital's encounter number with {event}")

    def admit_marcel(self) -> None:
        self._admit("marcel")
        self.expect("msp-lamarche", "admission.recorded", subject=self.encounter_key("marcel"))

    def discharge_marcel(self) -> None:
        self._discharge("marcel", care_plan=True)
        self.expect("dac", "discharge.recorded", subject=self.encounter_key("marcel"))
        self.expect("msp-lamarche", "handoff.proposed")
        self.expect("hospital", "handoff.proposed", count=2)

    def snp_requests(self) -> None:
        for index, spec in enumerate(self.territory.snp_requests):
            person = self.territory.people[spec["person"]]
            request = service_request(
                person,
                self.territory.communes[spec["commune"]],
                f"SAS-{self.run_tag}-{index}",
                spec["urgency"],
                spec["reason"],
            )
            answer = self.http.call("snp", "POST", "/fhir/ServiceRequest", self.tokens["sas"], request)
            if not any(e["resource"]["resourceType"] == "ServiceRequest" for e in answer.get("entry", [])):
                raise DemoError(f"the SNP request for {person.given} was refused: {json.dumps(answer)[:600]}")
        # A request is placed at once or, by snp's deadline worker, as soon as a slot it may take is known (a slot
        # whose territory reached snp a moment later, say): the offers below are awaited, not required at once.
        self.expect("msp-monthureux", "snp.offered")
        self.expect("cabinet-vittel", "snp.offered")
        self.expect("cpts", "snp.offered", count=2)

    def _tasks(self, key: str, **params: str) -> list[dict[str, Any]]:
        bundle = self.http.call("discharge", "GET", "/fhir/Task", self.tokens[key], params=params)
        return [entry["resource"] for entry in bundle.get("entry", [])]

    def orient_paul(self) -> None:
        self.expect("cpts", "orientation.requested")
        waiting = self._tasks("cpts", code=f"{TASK_CODE_SYSTEM}|orientation", status="requested")
        if not waiting:
            raise DemoError("the CPTS has no orientation Task for Paul in its Task search")
        orientation = waiting[0]["id"]  # newest first: this run's
        team = self.territory.org("msp-lamarche").id
        body = {"resourceType": "Parameters", "parameter": [{"name": "team", "valueString": team}]}
        self.http.call("discharge", "POST", f"/fhir/Task/{orientation}/$assign", self.tokens["cpts"], body)
        self.orientations["paul"] = orientation
        self.expect("msp-lamarche", "orientation.assigned")

    def accept_paul(self) -> None:
        based_on = f"Task/{self.orientations['paul']}"
        handoffs = [
            task
            for task in self._tasks("msp-lamarche", code="handoff", status="requested")
            if any(ref.get("reference") == based_on for ref in task.get("basedOn", []))
        ]
        if not handoffs:
            raise DemoError("the MSP de Lamarche has no handoff for Paul in its Task search")
        task = handoffs[0]["id"]
        self.http.call("discharge", "POST", f"/fhir/Task/{task}/$accept", self.tokens["msp-lamarche"])
        self.expect("msp-lamarche", "orientation.accepted")
        self.expect("hospital", "orientation.accepted")
        self.expect("cpts", "orientation.accepted")

    def readmit_paul(self) -> None:
        paul = self.territory.people["paul"]
        # The registry learns of the new team through the bus: wait until the MSP's CareTeam search lists Paul.
        wait_until(
            partial(self._treats, "msp-lamarche", paul.nir),
            self.timeout,
            lambda: "the registry to make the MSP de Lamarche Paul's treating team",
        )
        nda = f"{self.nda('paul')}-2"
        self._admit("paul", nda=nda)
        subject = self.encounter_key("paul").replace(self.nda("paul"), nda)
        self.expect("msp-lamarche", "admission.recorded", subject=subject)

    def leave_orientation_waiting(self) -> None:
        """Louise (no treating team) leaves hospital: her orientation waits on the CPTS's board (`--keep-running`)."""
        self._admit("louise")
        self._discharge("louise")
        self.expect("cpts", "orientation.requested", count=2)

    def _treats(self, key: str, nir: str) -> bool:
        bundle = self.http.call("admissions", "GET", "/fhir/CareTeam", self.tokens[key], params={"status": "active"})
        return any(
            ident.get("value") == nir
            for entry in bundle.get("entry", [])
            for ident in [entry["resource"].get("subject", {}).get("identifier", {})]
        )

    def collect(self) -> None:
        """Wait for every expected notification, then check nobody got more than the routing table says."""
        for key, events in EXPECTED.items():
            for event, count in events.items():
                self.expect(key, event, count=count)
        for key in self.territory.organisations:
            self.refresh(key)
        unexpected = {
            key: dict(r.by_event) for key, r in self.received.items() if dict(r.by_event) != EXPECTED.get(key, {})
        }
        if unexpected:
            raise DemoError(f"organisations received other notifications than the routing table says: {unexpected}")

    def run(self, on_step: Callable[[str], None] | None = None) -> dict[str, Received]:
        for label, step in self.steps:
            if on_step:
                on_step(label)
            started = time.monotonic()
            step()
            self.timings[label] = time.monotonic() - started
        return self.received
