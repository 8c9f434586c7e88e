"""`relais demo`: a Vosges territory seeded and played over HTTP, then what each organisation received.

The territory (relais/demo_data/territory.json) is the Ouest vosgien: the Centre hospitalier de l'Ouest
vosgien, two MSP, a médecin's practice taking SNP slots, the CPTS de la Plaine, a DAC and a SAS. People are
fictitious, with test INS-NIR identifiers. Journeys, all over HTTP:

1. Jeanne (MSP de Monthureux-sur-Saône): admission, discharge, handoff proposed and accepted by her MSP.
2. Paul (no treating team): admission and discharge reach the CPTS, minimised.
3. Marcel (MSP de Lamarche, cancer and living alone): admission, then a complex discharge that reaches the DAC.
4. The SAS asks for two SNP appointments: Jeanne's goes to her own MSP, Paul's to the territory pool.

Organisations are registered directly in the auth database (as `relais org add` does): an existing one
gets a fresh token. Feeds are read from where they stood before the run, so a run counts only itself.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextlib import closing as _closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from shared.identifiers import FINESS, INS_NIR_TEST, RPPS, make_finess, make_nir, make_rpps

SERVICES = ("admissions", "discharge", "snp", "notifications")
DATA = Path(__file__).resolve().parent / "demo_data" / "territory.json"

TRE_R254 = "https://mos.esante.gouv.fr/NOS/TRE_R254-TypeEvenement/FHIR/TRE-R254-TypeEvenement"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CARETEAM_ROLE = "https://relais.example.org/fhir/CodeSystem/careteam-role"
INSEE_COMMUNE = "https://relais.example.org/fhir/NamingSystem/insee-commune"
SNP_URGENCY = "https://relais.example.org/fhir/CodeSystem/snp-urgency"
SNP_REASON = "https://relais.example.org/fhir/CodeSystem/snp-reason-category"
TASK_CODE_SYSTEM = "https://relais.example.org/fhir/CodeSystem/task-code"
FHIR_JSON = "application/fhir+json"

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

log = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """The demo could not complete: a call failed or a notification did not arrive in time."""


# --- the territory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    postal_code: str


@dataclass(frozen=True)
class Organisation:
    key: str
    id: str
    role: str
    name: str
    commune: Commune | None = None


@dataclass(frozen=True)
class Referent:
    rpps: str
    family: str
    given: str
    phone: str


@dataclass(frozen=True)
class Person:
    key: str
    given: str
    family: str
    sex: int
    birth_date: date
    commune: Commune
    team: str | None
    conditions: tuple[tuple[str, str], ...]
    nir: str


@dataclass
class Territory:
    organisations: dict[str, Organisation]
    referents: dict[str, Referent]
    people: dict[str, Person]
    communes: dict[str, Commune]
    slots: list[dict[str, Any]]
    snp_requests: list[dict[str, Any]]
    territory: str
    territory_communes: list[str] = field(default_factory=list)

    def org(self, key: str) -> Organisation:
        return self.organisations[key]

    @property
    def postal_codes(self) -> list[str]:
        # Every postal code of the demo territory's communes is covered by the CPTS de la Plaine and the DAC.
        return sorted({self.communes[insee].postal_code for insee in self.territory_communes})


def load_territory(run_tag: str | None = None) -> Territory:
    """The territory of demo_data/territory.json; people get fresh INS-NIR values for each run tag."""
    from shared.communes import all_communes

    data = json.loads(DATA.read_text(encoding="utf-8"))
    communes = {c.insee: Commune(c.insee, c.name, c.postal_code) for c in all_communes().values()}
    rng = random.Random(run_tag or "relais-demo")  # noqa: S311 - reproducible demo data, not a secret
    organisations = {}
    for item in data["organisations"]:
        org_id = make_finess(item["finess_body"]) if "finess_body" in item else item["id"]
        commune = communes[item["commune"]] if item.get("commune") else None
        organisations[item["key"]] = Organisation(item["key"], org_id, item["role"], item["name"], commune)
    referents = {
        key: Referent(make_rpps(r["rpps_body"]), r["family"], r["given"], r["phone"])
        for key, r in data["referents"].items()
    }
    people = {}
    for item in data["people"]:
        born = date.fromisoformat(item["birth_date"])
        # Birth commune and order number are drawn per run: a re-run never meets an earlier enrolment.
        nir = make_nir(item["sex"], born.year % 100, born.month, "88", rng.randint(1, 999), rng.randint(1, 999))
        people[item["key"]] = Person(
            item["key"],
            item["given"],
            item["family"],
            item["sex"],
            born,
            communes[item["commune"]],
            item["team"],
            tuple((code, display) for code, display in item["conditions"]),
            nir,
        )
    return Territory(
        organisations,
        referents,
        people,
        communes,
        data["slots"],
        data["snp_requests"],
        data["territory"],
        list(data["communes"]),
    )


def register(territory: Territory, directory: Any) -> dict[str, str]:
    """Bearer tokens of every demo organisation: registered, or given a fresh token if already there."""
    from shared.errors import Conflict

    tokens = {}
    for org in territory.organisations.values():
        try:
            tokens[org.key] = directory.add(org.role, org.id, org.name)
        except Conflict:
            existing = directory.get(org.id)
            if existing is None or existing.role.value != org.role:
                role = existing.role.value if existing else "?"
                raise DemoError(f"organisation {org.id} is registered as a {role}, not a {org.role}") from None
            tokens[org.key] = directory.rotate(org.id)
    return tokens


# --- FHIR resources the actors send -------------------------------------------------------------------


def _id() -> str:
    return str(uuid.uuid4())


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _patient_identifier(person: Person) -> dict[str, Any]:
    return {"system": INS_NIR_TEST, "value": person.nir}


def hospital_message(
    territory: Territory,
    person: Person,
    *,
    event: str,
    nda: str,
    start: datetime,
    end: datetime | None = None,
    message_id: str | None = None,
    care_plan: bool = False,
) -> dict[str, Any]:
    """An ADM (admission) or SOR (discharge) message Bundle from the Centre hospitalier de l'Ouest vosgien."""
    hospital = territory.org("hospital")
    referent = territory.referents["hospital"]
    patient = {
        "resourceType": "Patient",
        "id": _id(),
        "identifier": [
            {"use": "official", "type": {"coding": [{"system": V2_0203, "code": "NI"}]}, **_patient_identifier(person)}
        ],
        "name": [{"use": "official", "family": person.family, "given": [person.given]}],
        "gender": "male" if person.sex == 1 else "female",
        "birthDate": person.birth_date.isoformat(),
        "address": [{"postalCode": person.commune.postal_code, "city": person.commune.name, "country": "FR"}],
    }
    organization = {
        "resourceType": "Organization",
        "id": _id(),
        "identifier": [{"system": FINESS, "value": hospital.id}],
        "name": hospital.name,
    }
    practitioner = {
        "resourceType": "Practitioner",
        "id": _id(),
        "identifier": [{"system": RPPS, "value": referent.rpps}],
        "name": [{"family": referent.family, "given": [referent.given], "prefix": ["Dr"]}],
    }
    role = {
        "resourceType": "PractitionerRole",
        "id": _id(),
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner['id']}"},
        "organization": {"reference": f"Organization/{organization['id']}"},
        "code": [{"text": "Référent hospitalier"}],
        "telecom": [{"system": "phone", "value": referent.phone, "use": "work"}],
    }
    period = {"start": _instant(start), **({"end": _instant(end)} if end else {})}
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": _id(),
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "VN"}]},
                "system": f"https://dpi.ch-ouest-vosgien.example/{hospital.id}/nda",
                "value": nda,
            }
        ],
        "status": "finished" if end else "in-progress",
        "class": {"system": V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "period": period,
        "serviceProvider": {"reference": f"Organization/{organization['id']}"},
        "participant": [{"individual": {"reference": f"PractitionerRole/{role['id']}"}}],
    }
    if end:
        encounter["hospitalization"] = {"dischargeDisposition": {"text": "Retour à domicile"}}
    conditions = [
        {
            "resourceType": "Condition",
            "id": _id(),
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
        }
        for code, display in person.conditions
    ]
    extra: list[dict[str, Any]] = []
    if end and care_plan:
        extra.append(
            {
                "resourceType": "CarePlan",
                "id": _id(),
                "status": "active",
                "intent": "plan",
                "title": "Plan de suivi de sortie",
                "subject": {"reference": f"Patient/{patient['id']}"},
                "encounter": {"reference": f"Encounter/{encounter['id']}"},
                "activity": [
                    {
                        "detail": {
                            "status": "scheduled",
                            "code": {
                                "coding": [
                                    {
                                        "system": "https://relais.example.org/fhir/CodeSystem/followup-activity",
                                        "code": code,
                                        "display": display,
                                    }
                                ]
                            },
                            "scheduledPeriod": {"start": _instant(end), "end": _instant(end + delay)},
                        }
                    }
                    for code, display, delay in (
                        ("nurse-visit", "Passage infirmier à domicile", timedelta(days=2)),
                        ("gp-visit", "Consultation du médecin traitant sous 7 jours", timedelta(days=7)),
                    )
                ],
            }
        )
    header = {
        "resourceType": "MessageHeader",
        "id": _id(),
        "eventCoding": {"system": TRE_R254, "code": event},
        "source": {"name": "DPI CH Ouest vosgien", "endpoint": "https://dpi.ch-ouest-vosgien.example/fhir"},
        "sender": {"reference": f"Organization/{organization['id']}"},
        "focus": [{"reference": f"Encounter/{encounter['id']}"}],
    }
    resources = [header, encounter, patient, organization, practitioner, role, *conditions, *extra]
    return {
        "resourceType": "Bundle",
        "id": message_id or _id(),
        "type": "message",
        "timestamp": _instant(end or start),
        "entry": [_entry(r) for r in resources],
    }


def careteam(territory: Territory, person: Person) -> dict[str, Any]:
    """The treating team enrols its patient (ANS Cercle de soins), with its team referent."""
    team = territory.org(person.team or "")
    referent = territory.referents[team.key]
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "name": team.name,
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [_patient_identifier(person)],
                "address": [{"postalCode": person.commune.postal_code, "city": person.commune.name}],
            }
        ],
        "subject": {"identifier": _patient_identifier(person)},
        "participant": [
            {
                "role": [{"coding": [{"system": CARETEAM_ROLE, "code": "referent"}]}],
                "member": {
                    "identifier": {"system": RPPS, "value": referent.rpps},
                    "display": f"Dr {referent.given} {referent.family}",
                },
            }
        ],
        "managingOrganization": [{"identifier": {"value": team.id}}],
    }


def availability(team: Organisation, commune: Commune, starts: list[datetime], run_tag: str) -> dict[str, Any]:
    """A transaction Bundle: the effecteur's SNP agenda in its commune and its free slots."""
    agenda = f"agenda-{team.key}"
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Schedule",
                "id": agenda,
                "active": True,
                "actor": [{"type": "Location", "identifier": {"system": INSEE_COMMUNE, "value": commune.insee}}],
            }
        }
    ]
    for index, start in enumerate(starts):
        entries.append(
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": f"snp-{run_tag}-{index}",
                    "meta": {"security": [{"code": "SNP"}]},
                    "schedule": {"reference": f"Schedule/{agenda}"},
                    "status": "free",
                    "start": _instant(start),
                    "end": _instant(start + timedelta(minutes=20)),
                }
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def service_request(person: Person, commune: Commune, identifier: str, urgency: str, reason: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "https://sas.example/vosges/demande", "value": identifier}],
        "category": [{"coding": [{"system": SNP_URGENCY, "code": urgency}]}],
        "reasonCode": [{"coding": [{"system": SNP_REASON, "code": reason}]}],
        "subject": {"identifier": _patient_identifier(person)},
        "locationCode": [{"coding": [{"system": INSEE_COMMUNE, "code": commune.insee}]}],
    }


# --- HTTP ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    """One notification read from `/notifications/feed` (a Parameters resource)."""

    id: str
    event: str
    role: str
    detail: str
    subject: str | None
    patient_key: str | None
    payload: Any
    resource: dict[str, Any]

    @classmethod
    def parse(cls, resource: dict[str, Any]) -> FeedItem:
        values: dict[str, Any] = {}
        for parameter in resource.get("parameter", []):
            name = parameter["name"]
            if name == "payload":
                values[name] = parameter.get("resource") or {
                    part["name"]: next((v for k, v in part.items() if k.startswith("value")), None)
                    for part in parameter.get("part", [])
                }
            else:
                values[name] = next((v for k, v in parameter.items() if k.startswith("value")), None)
        return cls(
            id=resource["id"],
            event=values.get("event", ""),
            role=values.get("role", ""),
            detail=values.get("detail", ""),
            subject=values.get("subject"),
            patient_key=values.get("patient-key"),
            payload=values.get("payload"),
            resource=resource,
        )

    def payload_resources(self, resource_type: str) -> list[dict[str, Any]]:
        if not isinstance(self.payload, dict) or self.payload.get("resourceType") != "Bundle":
            return []
        return [
            e["resource"]
            for e in self.payload.get("entry", [])
            if e.get("resource", {}).get("resourceType") == resource_type
        ]


def parse_urls(values: list[str] | str) -> dict[str, str]:
    """`http://host:8000` for every service, or `service=http://...` per service (the others keep the first)."""
    values = [values] if isinstance(values, str) else list(values)
    urls: dict[str, str] = {}
    default = None
    for value in values:
        name, sep, url = value.partition("=")
        if sep and name in SERVICES:
            urls[name] = url.rstrip("/")
        else:
            default = default or value.rstrip("/")
    missing = [s for s in SERVICES if s not in urls]
    if missing and default is None:
        raise DemoError(f"no URL for {', '.join(missing)}: give --url http://HOST:PORT or SERVICE=URL")
    return {s: urls.get(s) or default for s in SERVICES}  # type: ignore[misc]


class RelaisHttp:
    """The services over HTTP (one base URL per service; the same for all in combined mode)."""

    def __init__(self, urls: Mapping[str, str], timeout: float = 15.0) -> None:
        self.urls = dict(urls)
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        body: dict[str, Any] | None = None,
        *,
        fhir: bool = True,
        expect: tuple[int, ...] = (200, 201),
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON if fhir else "application/json"
            content = json.dumps(body, ensure_ascii=False).encode()
        url = f"{self.urls[service]}/{service}{path}"
        try:
            response = self.client.request(method, url, content=content, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {url}: {exc!r}") from exc
        if response.status_code not in expect:
            raise DemoError(f"{method} {url} answered {response.status_code}: {response.text[:800]}")
        return response.json() if response.content else {}

    def feed(self, token: str, after: str | None) -> tuple[list[FeedItem], str]:
        """Every notification after the cursor (all pages) and the cursor to continue from."""
        items: list[FeedItem] = []
        while True:
            params = {"limit": 200, **({"after": after} if after is not None else {})}
            bundle = self.call("notifications", "GET", "/feed", token, params=params)
            page = [FeedItem.parse(e["resource"]) for e in bundle.get("entry", [])]
            items.extend(page)
            after = next(tag["code"] for tag in bundle["meta"]["tag"] if tag["system"].endswith("feed-cursor"))
            if not page:
                return items, after

    def handled(self, service: str) -> float:
        """Bus messages the service's consumer group has handled successfully since its process started."""
        response = self.client.get(f"{self.urls[service]}/{service}/metrics")
        response.raise_for_status()
        total = 0.0
        pattern = re.compile(r"^relais_messages_handled_total\{([^}]*)\}\s+([0-9.e+]+)$")
        for line in response.text.splitlines():
            match = pattern.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            # Only "ok": a dead-lettered record (a broker's seed, a malformed message) is no mirrored change.
            if labels.get("consumer", "").endswith(f".{service}") and labels.get("outcome") == "ok":
                total += float(match.group(2))
        return total


def wait_until(predicate: Callable[[], Any], timeout: float, describe: Callable[[], str], interval: float = 0.1):
    """Poll with a deadline; DemoError with `describe()` when it passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = predicate()
        except DemoError as exc:
            last = exc
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise DemoError(f"timed out after {timeout:.0f} s: {describe()}{detail}")
        time.sleep(interval)


# --- the scenario -------------------------------------------------------------------------------------------


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
        self.now = datetime.now(UTC).replace(microsecond=0)
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


# --- running Relais in-process -----------------------------------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def embedded_relais(data_dir: Path, startup_timeout: float = 120.0) -> Iterator[tuple[str, Any]]:
    """Every service in this process (as `relais run`), served by uvicorn in a thread on a free loopback port.

    Configuration comes from the environment like `relais run`: SQLite and the embedded log under
    `data_dir` unless RELAIS_*_DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS say otherwise.
    """
    import uvicorn

    from relais.combined import combined_app
    from relais.services import SERVICE_NAMES, bootstrapper
    from shared.auth import Directory
    from shared.settings import RelaisSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["RELAIS_DATA_DIR"] = str(data_dir)
    settings = RelaisSettings()
    directory = Directory(settings.resolved_auth_url, settings.auth_database_schema)
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(combined_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="relais-demo-http", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.started and httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
            startup_timeout,
            lambda: f"Relais on {url} to answer /healthz",
        )
        yield url, directory
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        for service in services:
            service.runtime.close()
        directory.close()


# --- the command ---------------------------------------------------------------------------------------------------


def _progress_and_table(scenario: Scenario, console: Any) -> dict[str, Received]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    steps = scenario.steps
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=len(steps))
        for label, step in steps:
            progress.update(task, description=label)
            step()
            progress.advance(task)
        progress.update(task, description="done")
    return scenario.received


def received_table(received: Mapping[str, Received]) -> Any:
    from rich.table import Table

    table = Table(title="What each organisation received (its /notifications/feed)", show_lines=False)
    table.add_column("organisation")
    table.add_column("role")
    table.add_column("received", justify="right")
    table.add_column("events")
    table.add_column("detail")
    for item in received.values():
        org = item.organisation
        events = ", ".join(f"{event} ×{n}" for event, n in sorted(item.by_event.items())) or "—"
        details = ", ".join(sorted({i.detail for i in item.items})) or "—"
        table.add_row(org.name, org.role, str(item.count()), events, details)
    return table


def _serve_until_stopped(
    url: str, territory: Territory, tokens: Mapping[str, str], console: Any, stop: threading.Event
) -> None:
    """Leave the demo territory running for a newcomer to sign in to the pages."""
    console.print(f"\nThe territory keeps running. Sign in at {url}/app/ with one of these tokens:")
    for key in ("cpts", "msp-lamarche", "msp-monthureux", "hospital"):
        org = territory.org(key)
        console.print(f"  {org.name} ({org.role}): {tokens[key]}")
    console.print("Press Ctrl-C to stop.")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        console.print("stopping")


def run_demo(
    *,
    urls: list[str] | None = None,
    data_dir: Path | None = None,
    auth_database_url: str | None = None,
    auth_database_schema: str | None = None,
    timeout: float = 30.0,
    console: Any = None,
    keep_running: bool = False,
    stop: threading.Event | None = None,
) -> dict[str, Received]:
    """Seed the territory and play the journeys, in-process (default) or against running services (`urls`).

    keep_running (in-process only): leave the territory up afterwards, print where to sign in with which token,
    and serve until `stop` is set or the user presses Ctrl-C."""
    import tempfile

    from rich.console import Console

    from shared.auth import Directory
    from shared.settings import RelaisSettings

    console = console or Console()
    run_tag = uuid.uuid4().hex[:8]
    territory = load_territory(run_tag)

    tokens: dict[str, str] = {}

    def play(http: RelaisHttp, directory: Any) -> dict[str, Received]:
        tokens.update(register(territory, directory))
        scenario = Scenario(http, territory, tokens, timeout=timeout, run_tag=run_tag)
        received = _progress_and_table(scenario, console)
        console.print(received_table(received))
        return received

    if urls:
        settings = RelaisSettings()
        directory = Directory(
            auth_database_url or settings.resolved_auth_url, auth_database_schema or settings.auth_database_schema
        )
        http = RelaisHttp(parse_urls(urls))
        console.print(f"Relais at {', '.join(sorted(set(http.urls.values())))}")
        try:
            return play(http, directory)
        finally:
            http.close()
            directory.close()

    with tempfile.TemporaryDirectory(prefix="relais-demo-") as scratch:
        where = Path(data_dir) if data_dir else Path(scratch)
        log_path = where / "demo.log"
        where.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with ExitStack() as stack:
                with console.status("starting Relais in this process (migrating each service's database)"):
                    url, directory = stack.enter_context(embedded_relais(where))
                settings = RelaisSettings()
                bus = f"Kafka at {settings.kafka_bootstrap_servers}" if settings.uses_kafka else "the embedded log"
                console.print(f"Relais in this process on {url}: data in {where}, bus: {bus}")
                http = stack.enter_context(_closing(RelaisHttp({s: url for s in SERVICES})))
                received = play(http, directory)
                if keep_running:
                    _serve_until_stopped(url, territory, tokens, console, stop or threading.Event())
                return received
        finally:
            root.removeHandler(handler)
            handler.close()
