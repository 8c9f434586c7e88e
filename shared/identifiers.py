"""French health identifiers: naming systems, check-digit validators and the pseudonymous patient key."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from stdnum import luhn
from stdnum.exceptions import InvalidChecksum
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.fr import nir as stdnum_nir
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret

from shared.errors import BadRequest, Unprocessable

# Naming systems (docs/architecture.md#identifiers-and-naming-systems; ANS "Annuaire Santé" and INS referentials)
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
RPPS = "https://rpps.esante.gouv.fr"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "https://finess.esante.gouv.fr"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"
# FR Core carries ADELI and SIRET inside IDNPS ("0"+ADELI) and IDNST ("3"+SIRET); when a sender gives
# them bare, Relais names them with these local systems (no national URI exists for them in our sources).
RELAIS_NAMING = "https://relais.example.org/fhir/NamingSystem"
ADELI = f"{RELAIS_NAMING}/adeli"
SIRET = f"{RELAIS_NAMING}/siret"
SIREN = f"{RELAIS_NAMING}/siren"
# An organisation of the Relais directory by its id (a FINESS, or the id it was registered with): declared once.
ORGANISATION = f"{RELAIS_NAMING}/organisation"

INS_SYSTEMS = frozenset({INS_NIR, INS_NIR_TEST, INS_NIA})

_SEPARATORS = re.compile(r"[\s.\-]")


def _compact(value: str | None, label: str) -> str:
    if value is None or not str(value).strip():
        raise BadRequest(f"{label}: empty identifier value")
    return _SEPARATORS.sub("", str(value)).upper()


def _digits(value: str, length: int, label: str) -> str:
    if len(value) != length or not value.isdigit():
        raise Unprocessable(f"{label} must be {length} digits, got {len(value)} characters")
    return value


def _luhn(value: str, label: str) -> str:
    if not luhn.is_valid(value):
        raise Unprocessable(f"{label} {value}: check digit (Luhn) does not match")
    return value


def validate_nir(value: str | None) -> str:
    """NIR / INS-NIR: 13 characters + 2-digit key = 97 - (n mod 97), Corsica 2A/2B counted as 19/18."""
    nir = _compact(value, "NIR")
    if len(nir) != 15:
        raise Unprocessable(f"NIR must be 15 characters (13 + 2-digit key), got {len(nir)}")
    # sex/status digit: 1-2 born in France or abroad, 3-4 temporary, 7-8 provisional (NIA)
    if nir[0] not in "123478":
        raise Unprocessable(f"NIR must start with 1, 2, 3, 4, 7 or 8, got '{nir[0]}'")
    if not nir[3:5].isdigit() or not ("01" <= nir[3:5] <= "12" or "20" <= nir[3:5] <= "99"):
        raise Unprocessable(f"NIR month of birth '{nir[3:5]}' is invalid")
    try:
        # python-stdnum handles the 2A/2B substitution and the key
        return stdnum_nir.validate(nir)
    except InvalidChecksum as exc:
        raise Unprocessable("NIR key is wrong: its last 2 digits (the check key) do not match the first 13") from exc
    except StdnumError as exc:
        raise Unprocessable(f"NIR is invalid: {str(exc).lower().rstrip('.')}") from exc


def validate_rpps(value: str | None) -> str:
    """RPPS: 11 digits, the last a Luhn check digit."""
    return _luhn(_digits(_compact(value, "RPPS"), 11, "RPPS"), "RPPS")


def validate_adeli(value: str | None) -> str:
    """ADELI: 9 digits (department 2, profession 2, order 4, key 1), key by Luhn like RPPS."""
    return _luhn(_digits(_compact(value, "ADELI"), 9, "ADELI"), "ADELI")


def validate_finess(value: str | None) -> str:
    """FINESS: 9 characters (department 2, order 6, Luhn key 1); Corsica starts 2A/2B."""
    finess = _compact(value, "FINESS")
    if len(finess) != 9:
        raise Unprocessable(f"FINESS must be 9 characters, got {len(finess)}")
    if finess[:2] in ("2A", "2B"):
        # the key rule for Corsican (2A/2B) FINESS is not in our sources: check the format only
        _digits(finess[2:], 7, "FINESS after 2A/2B")
        return finess
    return _luhn(_digits(finess, 9, "FINESS"), "FINESS")


def validate_siret(value: str | None) -> str:
    """SIRET: 14 digits, Luhn (python-stdnum also knows La Poste's exception)."""
    siret = _compact(value, "SIRET")
    try:
        return stdnum_siret.validate(siret)
    except StdnumError as exc:
        raise Unprocessable(f"SIRET is invalid: {str(exc).lower().rstrip('.')}") from exc


def validate_siren(value: str | None) -> str:
    siren = _compact(value, "SIREN")
    try:
        return stdnum_siren.validate(siren)
    except StdnumError as exc:
        raise Unprocessable(f"SIREN is invalid: {str(exc).lower().rstrip('.')}") from exc


def validate_idnps(value: str | None) -> str:
    """IDNPS: type prefix + national id; "8"+RPPS and "0"+ADELI are checked, other types pass as given."""
    idnps = _compact(value, "IDNPS")
    if idnps.startswith("8") and len(idnps) == 12:
        return "8" + validate_rpps(idnps[1:])
    if idnps.startswith("0") and len(idnps) == 10:
        return "0" + validate_adeli(idnps[1:])
    return idnps


def validate_idnst(value: str | None) -> str:
    """IDNST: type prefix + id; "1"+FINESS, "2"+SIREN, "3"+SIRET are checked, other types pass."""
    idnst = _compact(value, "IDNST")
    if idnst.startswith("1") and len(idnst) == 10:
        return "1" + validate_finess(idnst[1:])
    if idnst.startswith("2") and len(idnst) == 10:
        return "2" + validate_siren(idnst[1:])
    if idnst.startswith("3") and len(idnst) == 15:
        return "3" + validate_siret(idnst[1:])
    return idnst


VALIDATORS: dict[str, Callable[[str | None], str]] = {
    INS_NIR: validate_nir,
    INS_NIR_TEST: validate_nir,
    INS_NIA: validate_nir,
    RPPS: validate_rpps,
    IDNPS: validate_idnps,
    ADELI: validate_adeli,
    FINESS: validate_finess,
    IDNST: validate_idnst,
    SIRET: validate_siret,
    SIREN: validate_siren,
}


def validate_identifier(system: str | None, value: str | None) -> str:
    """Normalised value for a known system; unknown systems are local identifiers, kept as sent."""
    validator = VALIDATORS.get(system or "")
    if validator is not None:
        return validator(value)
    if value is None or not str(value).strip():
        raise BadRequest(f"Identifier of system {system or '(none)'} has no value")
    return str(value).strip()


# The INS family names one person by one number: every INS system keys on this one namespace.
INS_KEY_NAMESPACE = "ins"


def key_namespace(identifier_system: str) -> str:
    """The namespace a patient key is computed in: one for the whole INS family, else the system itself."""
    return INS_KEY_NAMESPACE if identifier_system in INS_SYSTEMS else identifier_system


def patient_key(identifier_system: str, value: str, secret: str) -> str:
    """Pseudonymous patient key: HMAC-SHA256(secret, namespace|normalised value) as 32 hex chars.

    INS-NIR, its test OID and INS-NIA share one namespace, so the same normalised NIR is the same person
    (an opposition recorded under one applies under the others). It is the Kafka key of domain topics and
    the patient key of minimised data.
    """
    if not secret:
        raise ValueError("patient_key needs a non-empty secret")
    normalised = validate_identifier(identifier_system, value)
    message = f"{key_namespace(identifier_system)}|{normalised}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


# Generators for tests and fixtures: they compute the keys so test data always validates.


def nir_key(first13: str) -> str:
    """The 2-digit NIR key for 13 characters (Corsica 2A/2B included)."""
    return stdnum_nir.calc_check_digits(first13.upper())


def make_nir(sex: int, yy: int, mm: int, dept: str, commune: int, order: int) -> str:
    """A valid NIR: sex 1/2, yy/mm of birth, dept "75" or "2A", commune 3 digits, order 3 digits."""
    body = f"{sex}{yy:02d}{mm:02d}{dept.upper():0>2}{commune:03d}{order:03d}"
    if len(body) != 13:
        raise ValueError(f"NIR body must be 13 characters, got {body!r}")
    return body + nir_key(body)


def make_luhn(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def make_finess(body8: str) -> str:
    """A valid FINESS from 8 digits (appends the Luhn key)."""
    return make_luhn(_digits(body8, 8, "FINESS body"))


def make_rpps(body10: str) -> str:
    """A valid RPPS from 10 digits (appends the Luhn key)."""
    return make_luhn(_digits(body10, 10, "RPPS body"))


def make_adeli(body8: str) -> str:
    """A valid ADELI from 8 digits (appends the Luhn key)."""
    return make_luhn(_digits(body8, 8, "ADELI body"))
