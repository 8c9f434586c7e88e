"""The SAS platform pulls availability: `GET /snp/fhir/Slot` as the ANS SAS IG queries it, and what it must never see.

Fixtures are Relais' own, in the IG's shapes (Practitioner with an RPPS, PractitionerRole with a contained
Location, Schedule naming both, Slots typed with TRE_R314 in meta.security).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from services.snp import domain
from services.snp.entrypoints.consumers import on_careteam_message
from services.snp.entrypoints.sas import MAX_COUNT
from services.snp.entrypoints.workers import retry_waiting
from services.snp.resources import ACTOR_PROFILES, SAS_BUNDLE_PROFILE, SAS_SCHEDULE_PROFILE, SAS_SLOT_PROFILE
from shared.identifiers import make_rpps
from tests.unit.test_snp_service import (  # noqa: F401 - snp is the fixture
    START,
    ask,
    bearer,
    publish,
    service_request,
    snp,
    territory_changed,
)

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
TRE_R314 = domain.SLOT_TYPE_SYSTEM
DR_CONTREX = make_rpps("1008814001")
DR_VITTEL = make_rpps("1008880002")
SEARCH_WINDOW = f"start=ge{START.isoformat()}&start=le{(START + timedelta(days=2)).isoformat()}"


def ig_availability(
    practitioner: str, postal_code: str, city: str, slots: list[tuple[int, tuple[str, ...]]], *, tag: str
) -> dict:
    """A transaction Bundle in the IG's shape: Practitioner, PractitionerRole (contained Location), Schedule, Slots."""
    entries: list[dict] = [
        {
            "fullUrl": f"https://editeur.example/Practitioner/{tag}",
            "resource": {
                "resourceType": "Practitioner",
                "id": tag,
                "identifier": [{"system": RPPS, "value": practitioner}],
                "name": [{"family": f"DOCTEUR-{tag.upper()}", "given": ["Camille"]}],
            },
        },
        {
            "fullUrl": f"https://editeur.example/PractitionerRole/{tag}-role",
            "resource": {
                "resourceType": "PractitionerRole",
                "id": f"{tag}-role",
                "contained": [
                    {
                        "resourceType": "Location",
                        "id": "cabinet",
                        "address": {"line": ["1 place de la Mairie"], "city": city, "postalCode": postal_code},
                    }
                ],
                "practitioner": {"reference": f"Practitioner/{tag}"},
                "location": [{"reference": "#cabinet"}],
            },
        },
        {
            "fullUrl": f"https://editeur.example/Schedule/{tag}-agenda",
            "resource": {
                "resourceType": "Schedule",
                "id": f"{tag}-agenda",
                "actor": [{"reference": f"Practitioner/{tag}"}, {"reference": f"PractitionerRole/{tag}-role"}],
            },
        },
    ]
    for index, (hours, types) in enumerate(slots):
        start = START + timedelta(hours=hours)
        entries.append(
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": f"{tag}-slot-{index}",
                    "meta": {"security": [{"system": TRE_R314, "code": code} for code in types]},
                    "serviceType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                 "code": "AMB"}]}],
                    "specialty": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale"
                                               "/FHIR/TRE-R38-SpecialiteOrdinale", "code": "SM54"}]}],
                    "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276",
                                                    "code": "ROUTINE"}]},
                    "schedule": {"reference": f"Schedule/{tag}-agenda"},
                    "status": "free",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=20)).isoformat(),
                    "comment": "texte libre de l'éditeur",
                }
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
def agendas(snp):  # noqa: F811 - the fixture imported above
    contrex = ig_availability(DR_CONTREX, "88140", "Contrexéville", [(1, ("PUBLIC", "SNP")), (5, ("PRO",))], tag="c")
    vittel = ig_availability(DR_VITTEL, "88800", "Vittel", [(2, ("SNP",)), (30, ("CPTS", "PUBLIC"))], tag="v")
    assert publish(snp, "gp-contrex", contrex).status_code == 200
    assert publish(snp, "msp-vittel", vittel).status_code == 200
    return snp


def search(snp, query: str, org: str = "sas-88"):  # noqa: F811
    return snp.client.get(f"/snp/fhir/Slot?{query}", headers=bearer(org and snp.tokens[org]))


def ig_query(*practitioners: str, extra: str = "") -> str:
    actors = ",".join(f"{RPPS}|{p}" for p in practitioners)
    return (
        f"_include=Slot:schedule&_include:iterate=Schedule:actor&status=free&{SEARCH_WINDOW}"
        f"&schedule.actor:Practitioner.identifier={actors}&_count=1000{extra}"
    )


def matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def test_the_sas_platform_search_answers_with_the_ig_searchset(agendas):
    response = search(agendas, ig_query(DR_CONTREX, DR_VITTEL).replace("|", "%7C"))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["meta"]["profile"] == [SAS_BUNDLE_PROFILE]
    assert bundle["total"] == 4 and [link["relation"] for link in bundle["link"]] == ["self"]
    slots = matches(bundle)
    assert [s["start"] for s in slots] == sorted(s["start"] for s in slots) and len(slots) == 4
    for slot in slots:
        assert slot["meta"]["profile"][0] in (SAS_SLOT_PROFILE, "https://interop.esante.gouv.fr/ig/fhir/sas/"
                                              "StructureDefinition/sas-cpts-slot-aggregator")
        assert {s["system"] for s in slot["meta"]["security"]} == {TRE_R314}
        assert slot["serviceType"][0]["coding"][0]["code"] == "AMB"
        assert slot["specialty"][0]["coding"][0]["code"] == "SM54"
        assert slot["appointmentType"]["coding"][0]["code"] == "ROUTINE"
        assert "comment" not in slot  # free text is not re-served
    assert [[s["code"] for s in slot["meta"]["security"]] for slot in slots] == [
        ["PUBLIC", "SNP"], ["SNP"], ["PRO"], ["PUBLIC", "CPTS"]
    ]
    included = {e["fullUrl"]: e for e in bundle["entry"] if e["search"]["mode"] == "include"}
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(full_urls) == len(set(full_urls))  # each Schedule and actor once
    schedules = [e["resource"] for e in included.values() if e["resource"]["resourceType"] == "Schedule"]
    assert len(schedules) == 2 and all(s["meta"]["profile"] == [SAS_SCHEDULE_PROFILE] for s in schedules)
    base = bundle["link"][0]["url"].split("/Slot?")[0]
    for slot in slots:  # every reference resolves inside the Bundle
        assert f"{base}/{slot['schedule']['reference']}" in included
    for schedule in schedules:
        kinds = []
        for actor in schedule["actor"]:
            target = included[f"{base}/{actor['reference']}"]["resource"]
            assert target["meta"]["profile"] == [ACTOR_PROFILES[target["resourceType"]]]
            kinds.append(target["resourceType"])
        assert kinds == ["Practitioner", "PractitionerRole"]
    roles = [e["resource"] for e in included.values() if e["resource"]["resourceType"] == "PractitionerRole"]
    assert sorted(r["contained"][0]["address"]["postalCode"] for r in roles) == ["88140", "88800"]
    practitioners = [e["resource"] for e in included.values() if e["resource"]["resourceType"] == "Practitioner"]
    assert sorted(p["identifier"][0]["value"] for p in practitioners) == sorted([DR_CONTREX, DR_VITTEL])


def test_the_search_filters_on_practitioner_type_place_service_and_window(agendas):
    only_contrex = search(agendas, ig_query(DR_CONTREX)).json()
    assert only_contrex["total"] == 2
    schedules = [e["resource"] for e in only_contrex["entry"] if e["resource"]["resourceType"] == "Schedule"]
    assert len(schedules) == 1
    assert {s["schedule"]["reference"] for s in matches(only_contrex)} == {f"Schedule/{schedules[0]['id']}"}
    snp_only = search(agendas, ig_query(DR_CONTREX, DR_VITTEL, extra=f"&_security={TRE_R314}|SNP")).json()
    assert snp_only["total"] == 2
    assert all("SNP" in [s["code"] for s in slot["meta"]["security"]] for slot in matches(snp_only))
    cpts_or_pro = search(agendas, f"{SEARCH_WINDOW}&_security=CPTS,PRO").json()
    assert cpts_or_pro["total"] == 2
    in_vittel = search(agendas, f"{SEARCH_WINDOW}&schedule.actor:Location.address-postalcode=88800").json()
    assert in_vittel["total"] == 2 and "entry" in in_vittel
    assert search(agendas, f"{SEARCH_WINDOW}&specialty=SM54&service-type=AMB").json()["total"] == 4
    assert search(agendas, f"{SEARCH_WINDOW}&specialty=SM01").json()["total"] == 0
    tight = f"start=ge{START.isoformat()}&start=le{(START + timedelta(hours=3)).isoformat()}"
    assert search(agendas, tight).json()["total"] == 2
    bare = search(agendas, f"{SEARCH_WINDOW}&schedule.actor:Practitioner.identifier={RPPS}|{DR_VITTEL}").json()
    assert {e["search"]["mode"] for e in bare["entry"]} == {"match"}  # no _include: slots alone


def test_paging_follows_next_links_over_every_match_once(agendas):
    seen: list[str] = []
    url = f"/snp/fhir/Slot?{ig_query(DR_CONTREX, DR_VITTEL).replace('_count=1000', '_count=1')}"
    for _ in range(10):
        bundle = agendas.client.get(url, headers=bearer(agendas.tokens["sas-88"])).json()
        assert bundle["total"] == 4
        seen += [s["id"] for s in matches(bundle)]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        parts = urlsplit(following[0])
        url = f"{parts.path}?{parts.query}"
    assert len(seen) == 4 and len(set(seen)) == 4


def test_a_huge_count_is_served_in_pages_of_the_maximum(agendas):
    response = search(agendas, ig_query(DR_CONTREX).replace("_count=1000", "_count=100000"))
    assert response.status_code == 200
    self_link = dict(parse_qsl(urlsplit(response.json()["link"][0]["url"]).query))
    assert self_link["_count"] == str(MAX_COUNT)


@pytest.mark.parametrize(
    "query",
    [
        f"{SEARCH_WINDOW}&patient=123",  # unknown parameter
        f"{SEARCH_WINDOW}&_sort=-start",
        f"{SEARCH_WINDOW}&status=busy",  # booked slots are not the SAS platform's to list
        f"start=ge{START.isoformat()}",  # the IG requires both bounds
        f"start=ge{START.isoformat()}&start=le{(START + timedelta(days=400)).isoformat()}",
        f"{SEARCH_WINDOW}&_count=-1",
        f"{SEARCH_WINDOW}&_include=Schedule:*",
        f"{SEARCH_WINDOW}&_security=VIP",
        f"{SEARCH_WINDOW}&schedule.actor:Practitioner.identifier=" + ",".join(f"{RPPS}|{i}" for i in range(26)),
        f"{SEARCH_WINDOW}&schedule.actor:Location.address-postalcode=' OR 1=1 --",
    ],
)
def test_a_malformed_or_unknown_search_is_a_400_outcome(agendas, query):
    response = search(agendas, query)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_only_the_sas_role_searches(agendas):
    assert search(agendas, ig_query(DR_CONTREX), org="gp-contrex").status_code == 403
    assert search(agendas, ig_query(DR_CONTREX), org="cpts-ouest").status_code == 403
    assert agendas.client.get(f"/snp/fhir/Slot?{ig_query(DR_CONTREX)}").status_code == 401


def test_a_booked_slot_and_its_patient_never_show_in_a_search(agendas):
    placed = ask(agendas, service_request("r1", "88114", nir=None))
    appointment = placed.json()["entry"][1]["resource"]
    patient = placed.json()["entry"][0]["resource"]["subject"]["identifier"]["value"]
    booked = appointment["slot"][0]["reference"].removeprefix("Slot/")
    response = search(agendas, ig_query(DR_CONTREX, DR_VITTEL))
    assert booked not in {s["id"] for s in matches(response.json())}
    assert response.json()["total"] == 3
    assert patient not in response.text and "ServiceRequest" not in response.text


def test_withdrawn_slots_leave_the_search(agendas):
    first = matches(search(agendas, ig_query(DR_CONTREX)).json())[0]["id"]
    deleted = agendas.client.delete(f"/snp/fhir/Slot/{first}", headers=bearer(agendas.tokens["gp-contrex"]))
    assert deleted.status_code == 204
    assert first not in {s["id"] for s in matches(search(agendas, ig_query(DR_CONTREX)).json())}


def test_slots_not_opened_to_snp_are_searchable_but_never_placed(snp):  # noqa: F811
    pro_only = ig_availability(DR_CONTREX, "88140", "Contrexéville", [(1, ("PRO",)), (2, ("PUBLIC",))], tag="p")
    assert publish(snp, "gp-contrex", pro_only).status_code == 200
    assert search(snp, ig_query(DR_CONTREX)).json()["total"] == 2
    response = ask(snp, service_request("r1", "88114"))
    assert response.status_code == 201 and len(response.json()["entry"]) == 1  # waiting: no SNP slot


def test_a_schedule_located_only_by_postal_code_is_kept_outside_any_cpts_territory(snp):  # noqa: F811
    # Agen (47000) has no CPTS in this territory mirror: the SAS still finds the slot, no pool uses it.
    agen = ig_availability(DR_CONTREX, "47000", "Agen", [(1, ("PUBLIC", "SNP"))], tag="a")
    assert publish(snp, "gp-contrex", agen).status_code == 200
    found = search(snp, f"{SEARCH_WINDOW}&schedule.actor:Location.address-postalcode=47000").json()
    assert found["total"] == 1
    unknown = ig_availability(DR_CONTREX, "00000", "Nulle-part", [(1, ("SNP",))], tag="z")
    refused = publish(snp, "gp-contrex", unknown)
    assert refused.status_code == 422 and "postalCode" in refused.text


def ig_appointment(request_id: str, practitioner: str, start: str, end: str, status: str = "booked") -> dict:
    """An Appointment in the IG's FrAppointmentSAS shape, plus basedOn: the Relais request it books for."""
    return {
        "resourceType": "Appointment",
        "meta": {"profile": ["http://interopsante.org/fhir/StructureDefinition/FrAppointmentSAS"]},
        "extension": [
            {
                "url": "http://interopsante.org/fhir/StructureDefinition/FrAppointmentOperator",
                "valueReference": {"identifier": {"system": RPPS, "value": "3000000000/REGUL"}},
            }
        ],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.3.6", "value": f"sas-{request_id}"}],
        "status": status,
        "start": start,
        "end": end,
        "basedOn": [{"reference": f"ServiceRequest/{request_id}"}],
        "participant": [
            {
                "actor": {
                    "identifier": {
                        "type": {"coding": [{"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203",
                                             "code": "IDNPS"}]},
                        "system": RPPS,
                        "value": practitioner,
                    }
                },
                "status": "accepted",
            }
        ],
    }


def book(snp, body: dict, org: str = "sas-88"):  # noqa: F811
    return snp.client.post("/snp/fhir/Appointment", json=body, headers=bearer(snp.tokens[org]))


def test_the_sas_books_a_searched_slot_with_the_ig_appointment(snp):  # noqa: F811
    waiting = ask(snp, service_request("r1", "88114"))
    assert len(waiting.json()["entry"]) == 1  # nothing free yet: the request waits
    request_id = waiting.json()["entry"][0]["resource"]["id"]
    body = ig_availability(DR_VITTEL, "88800", "Vittel", [(1, ("SNP",)), (2, ("SNP", "PUBLIC"))], tag="v")
    assert publish(snp, "msp-vittel", body).status_code == 200
    chosen = matches(search(snp, ig_query(DR_VITTEL)).json())[1]  # the SAS picks the later one
    booking = ig_appointment(request_id, DR_VITTEL, chosen["start"], chosen["end"])
    created = book(snp, booking)
    assert created.status_code == 201, created.text
    appointment = created.json()
    assert appointment["status"] == "booked" and appointment["slot"] == [{"reference": f"Slot/{chosen['id']}"}]
    assert appointment["meta"]["profile"] == ["http://interopsante.org/fhir/StructureDefinition/FrAppointmentSAS"]
    assert created.headers["location"] == f"/snp/fhir/Appointment/{appointment['id']}"
    assert chosen["id"] not in {s["id"] for s in matches(search(snp, ig_query(DR_VITTEL)).json())}
    again = book(snp, booking)  # the same booking sent twice is the same appointment
    assert again.status_code == 200 and again.json()["id"] == appointment["id"]
    other = ask(snp, service_request("r2", "88114")).json()["entry"][0]["resource"]["id"]
    taken = book(snp, ig_appointment(other, DR_VITTEL, chosen["start"], chosen["end"]))
    assert taken.status_code in (409, 422)
    cancelled = snp.client.post(
        f"/snp/fhir/Appointment/{appointment['id']}/$status",
        json={"resourceType": "Parameters", "parameter": [{"name": "status", "valueCode": "CANCELLED"}]},
        headers=bearer(snp.tokens["sas-88"]),
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert chosen["id"] in {s["id"] for s in matches(search(snp, ig_query(DR_VITTEL)).json())}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"status": "fulfilled"}, 422),  # a booking starts pending or booked
        ({"basedOn": []}, 422),  # Relais books for a request it knows
        ({"participant": [], "slot": []}, 422),
        ({"resourceType": "Slot"}, 400),
    ],
)
def test_a_booking_outside_the_ig_shape_is_refused(agendas, change, status):
    request_id = ask(agendas, service_request("r9", "88114")).json()["entry"][0]["resource"]["id"]
    body = ig_appointment(request_id, DR_CONTREX, START.isoformat(), START.isoformat()) | change
    assert book(agendas, body).status_code == status


def test_a_team_cannot_book_and_a_sas_cannot_book_another_sas_request(agendas):
    request_id = ask(agendas, service_request("r1", "88114")).json()["entry"][0]["resource"]["id"]
    body = ig_appointment(request_id, DR_CONTREX, START.isoformat(), START.isoformat())
    assert book(agendas, body, org="gp-contrex").status_code == 403
    missing = ig_appointment("not-a-request", DR_CONTREX, START.isoformat(), START.isoformat())
    assert book(agendas, missing).status_code == 404


def test_a_batch_answers_every_entry_actors_included(snp):  # noqa: F811
    body = ig_availability(DR_VITTEL, "88800", "Vittel", [(1, ("SNP",))], tag="b") | {"type": "batch"}
    answer = publish(snp, "msp-vittel", body).json()
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["200", "200", "200", "201"]


def test_slots_published_before_their_cpts_is_known_join_its_pool_when_it_is(snp):  # noqa: F811
    body = ig_availability(DR_CONTREX, "88500", "Mirecourt", [(1, ("SNP",))], tag="m")
    assert publish(snp, "gp-contrex", body).status_code == 200  # 88500: no CPTS yet
    assert len(ask(snp, service_request("r1", "88114")).json()["entry"]) == 1  # not in cpts-ouest's pool
    on_careteam_message(snp.bus, territory_changed("88500", "cpts-ouest"))
    assert retry_waiting(snp.bus) == 1  # the waiting request now finds the Mirecourt slot
