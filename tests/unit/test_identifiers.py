"""Check digits of French health identifiers, and the pseudonymous patient key."""

from __future__ import annotations

import pytest

from shared.errors import BadRequest, RelaisError, Unprocessable
from shared.identifiers import (
    FINESS,
    INS_NIR,
    INS_NIR_TEST,
    RPPS,
    make_adeli,
    make_finess,
    make_nir,
    make_rpps,
    patient_key,
    validate_adeli,
    validate_finess,
    validate_identifier,
    validate_nir,
    validate_rpps,
    validate_siret,
)


def test_valid_nir_is_normalised():
    assert validate_nir("2 55 03 75 114 027 26") == "255037511402726"


@pytest.mark.parametrize("dept", ["2A", "2B"])
def test_corsican_nir_uses_the_19_18_substitution(dept):
    nir = make_nir(1, 80, 3, dept, 4, 5)
    substituted = nir[:5] + ("19" if dept == "2A" else "18") + nir[7:13]
    assert int(nir[13:]) == 97 - int(substituted) % 97
    assert validate_nir(nir.lower()) == nir


def test_corsican_nir_with_the_other_department_key_is_rejected():
    nir_2a = make_nir(1, 80, 3, "2A", 4, 5)
    with pytest.raises(Unprocessable):
        validate_nir(nir_2a[:5] + "2B" + nir_2a[7:])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("255037511402727", "check"),
        ("25503751140272", "15 characters"),
        ("955037511402726", "start with"),
        ("255137511402726", "month"),
    ],
)
def test_invalid_nir_is_422_with_a_reason(value, fragment):
    with pytest.raises(Unprocessable) as exc:
        validate_nir(value)
    assert fragment in exc.value.diagnostics


def test_empty_identifier_is_400():
    with pytest.raises(BadRequest):
        validate_nir("  ")


def test_rpps_luhn():
    rpps = make_rpps("1000123456")
    assert validate_rpps(rpps) == rpps
    with pytest.raises(Unprocessable):
        validate_rpps(rpps[:-1] + str((int(rpps[-1]) + 1) % 10))
    with pytest.raises(Unprocessable):
        validate_rpps("1234")


def test_adeli_luhn():
    adeli = make_adeli("75101234")  # department 75, profession 10, order 1234
    assert validate_adeli(adeli) == adeli
    with pytest.raises(Unprocessable):
        validate_adeli(adeli[:-1] + str((int(adeli[-1]) + 1) % 10))


@pytest.mark.parametrize("finess", ["750712184", "130786049", "690781810"])
def test_real_finess_numbers_are_valid(finess):
    assert validate_finess(finess) == finess


def test_finess_wrong_key_and_corsica():
    with pytest.raises(Unprocessable):
        validate_finess("750712185")
    assert validate_finess("2a0000145") == "2A0000145"
    assert validate_finess(make_finess("33078119")) == "330781196"


def test_siret():
    assert validate_siret("732 829 320 00074") == "73282932000074"
    with pytest.raises(Unprocessable):
        validate_siret("73282932000075")


def test_validate_identifier_dispatches_by_system_and_keeps_local_ones():
    assert validate_identifier(INS_NIR_TEST, "255037511402726") == "255037511402726"
    assert validate_identifier(FINESS, "750712184") == "750712184"
    with pytest.raises(RelaisError):
        validate_identifier(RPPS, "10001234567")
    assert validate_identifier("https://hopital.example.org/ipp", " IPP-42 ") == "IPP-42"


def test_patient_key_is_stable_pseudonymous_and_secret_dependent():
    key = patient_key(INS_NIR, "2 55 03 75 114 027 26", "s3cret")
    assert key == patient_key(INS_NIR, "255037511402726", "s3cret")
    assert len(key) == 32 and "255037511402726" not in key
    assert key != patient_key(INS_NIR, "255037511402726", "other")
    # The INS family is one person: the test OID gives the same key; a local system does not.
    assert key == patient_key(INS_NIR_TEST, "255037511402726", "s3cret")
    assert key != patient_key("urn:oid:1.2.250.1.999.1.1", "255037511402726", "s3cret")
