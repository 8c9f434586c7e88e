"""The shared reader of a hospital's encounter message: hospital and caller, identity, referent, residence."""

from __future__ import annotations

from datetime import date

import pytest

from shared.errors import Forbidden, Unprocessable
from shared.fhir.encounter import read_encounter_message
from shared.fhir.intake import parse_message_bundle
from shared.identifiers import FINESS, INS_NIR, INS_NIR_TEST, make_finess
from tests import factories as f

HOSPITAL = f.DEFAULT_FINESS
ENGINE = make_finess("75000004")
LOCAL_IPP = "https://hopital.example.org/ipp"


def resources(bundle: dict) -> dict[str, dict]:
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"][1:]}


def read(bundle: dict, caller: str = HOSPITAL):
    return read_encounter_message(parse_message_bundle(f.body(bundle), "application/fhir+json"), caller)


def relayed(bundle: dict, engine_finess: str | None = ENGINE) -> dict:
    """The message as an integration engine relays it: MessageHeader.sender is the engine."""
    engine = f.hospital(finess=engine_finess or ENGINE, name="Moteur d'intégration")
    if engine_finess is None:
        del engine["identifier"]
    bundle["entry"].append({"fullUrl": f"urn:uuid:{engine['id']}", "resource": engine})
    bundle["entry"][0]["resource"]["sender"] = {"reference": f"Organization/{engine['id']}"}
    return bundle


def test_a_direct_message_names_the_hospital_and_its_encounter():
    found = read(f.admission_message())
    assert found.hospital_org_id == HOSPITAL
    assert found.encounter_key == f"https://hopital.example.org/{HOSPITAL}/nda|NDA-2024-000123"
    assert found.status == "in-progress"


@pytest.mark.parametrize("engine_finess", [ENGINE, None], ids=["engine-with-finess", "engine-without-finess"])
def test_a_relayed_message_is_the_hospital_of_the_encounter(engine_finess):
    assert read(relayed(f.admission_message(), engine_finess)).hospital_org_id == HOSPITAL


def test_a_relayed_message_posted_with_the_engines_credential_is_forbidden():
    with pytest.raises(Forbidden):
        read(relayed(f.admission_message()), caller=ENGINE)


def test_without_service_provider_the_sender_is_the_hospital():
    bundle = f.admission_message()
    del resources(bundle)["Encounter"]["serviceProvider"]
    assert read(bundle).hospital_org_id == HOSPITAL


def test_a_service_provider_given_by_identifier_only_is_read():
    bundle = relayed(f.admission_message())
    resources(bundle)["Encounter"]["serviceProvider"] = {"identifier": {"system": FINESS, "value": HOSPITAL}}
    assert read(bundle).hospital_org_id == HOSPITAL


def test_a_service_provider_without_finess_falls_back_to_the_sender():
    bundle = f.admission_message()
    del resources(bundle)["Organization"]["identifier"]
    bundle = relayed(bundle)
    assert read(bundle, caller=ENGINE).hospital_org_id == ENGINE


def test_no_organisation_with_a_finess_is_unprocessable():
    bundle = f.admission_message()
    del resources(bundle)["Organization"]["identifier"]
    with pytest.raises(Unprocessable):
        read(bundle)


def test_another_hospitals_message_is_forbidden():
    with pytest.raises(Forbidden):
        read(f.admission_message(), caller=make_finess("13000001"))


def test_an_ins_is_preferred_to_a_local_identifier_listed_before_it():
    bundle = f.admission_message()
    patient = resources(bundle)["Patient"]
    patient["identifier"].insert(0, {"system": LOCAL_IPP, "value": "IPP-42"})
    identity = read(bundle).identity
    assert (identity.system, identity.value, identity.local_only) == (INS_NIR_TEST, f.DEFAULT_NIR, False)


def test_the_production_ins_is_preferred_to_the_test_one():
    bundle = f.admission_message()
    patient = resources(bundle)["Patient"]
    patient["identifier"].append({"system": INS_NIR, "value": f.DEFAULT_NIR})
    assert read(bundle).identity.system == INS_NIR


def test_the_nir_is_normalised():
    nir = f.DEFAULT_NIR
    spaced = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    assert read(f.admission_message(nir=spaced)).identity.value == nir


def test_a_local_identifier_alone_is_accepted_and_flagged_local_only():
    bundle = f.admission_message()
    resources(bundle)["Patient"]["identifier"] = [{"system": LOCAL_IPP, "value": " IPP-42 "}]
    identity = read(bundle).identity
    assert (identity.system, identity.value, identity.local_only) == (LOCAL_IPP, "IPP-42", True)


def test_an_ins_with_a_wrong_key_is_unprocessable_even_beside_a_local_identifier():
    bundle = f.admission_message()
    patient = resources(bundle)["Patient"]
    value = patient["identifier"][0]["value"]
    patient["identifier"][0]["value"] = value[:-2] + ("00" if value[-2:] != "00" else "01")
    patient["identifier"].append({"system": LOCAL_IPP, "value": "IPP-42"})
    with pytest.raises(Unprocessable, match="NIR"):
        read(bundle)


def test_an_old_identifier_is_not_the_patients_identity():
    bundle = f.admission_message()
    patient = resources(bundle)["Patient"]
    patient["identifier"][0]["use"] = "old"
    patient["identifier"].append({"system": LOCAL_IPP, "value": "IPP-42"})
    assert read(bundle).identity.local_only


def test_residence_prefers_the_home_address_and_keeps_the_country():
    bundle = f.admission_message()
    resources(bundle)["Patient"]["address"] = [
        {"use": "old", "postalCode": "13001", "city": "Marseille"},
        {"use": "work", "postalCode": "92100", "city": "Boulogne"},
        {"use": "home", "postalCode": "88800", "city": "Vittel", "country": "FR"},
    ]
    found = read(bundle)
    # The commune is the reference list's INSEE code for the postal code, never the address's city text.
    assert (found.residence.postal_code, found.residence.commune, found.residence.country) == ("88800", "88516", "FR")


def test_a_complete_birth_date_is_a_date_and_a_partial_one_is_none():
    assert read(f.admission_message(birth_date="1955-03-14")).birth_date == date(1955, 3, 14)
    assert read(f.admission_message(birth_date="1955")).birth_date is None


def test_the_referent_is_optional_but_needs_a_way_to_be_reached():
    assert read(f.admission_message(include_referent=False)).referent is None
    found = read(f.admission_message()).referent
    assert found is not None and found.phone and found.mssante and found.rpps
    assert found.name == "Dr Paul DURAND"
    bundle = f.admission_message()
    del resources(bundle)["PractitionerRole"]["telecom"]
    with pytest.raises(Unprocessable):
        read(bundle)


def test_an_encounter_without_identifier_or_patient_is_unprocessable():
    bundle = f.admission_message()
    del resources(bundle)["Encounter"]["identifier"]
    with pytest.raises(Unprocessable, match=r"Encounter\.identifier"):
        read(bundle)
    bundle = f.admission_message()
    del resources(bundle)["Encounter"]["subject"]
    with pytest.raises(Unprocessable, match=r"Encounter\.subject"):
        read(bundle)
