"""One check of an MSSanté address, for every way one is set (CLI, the team's own route, the mail channel)."""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_ADDRESS_LENGTH = 254
# A deliberately narrow local part: MSSanté addresses are `prenom.nom@domaine` or a structure's service name.
_ADDRESS = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$")


class MssanteAddressError(ValueError):
    """An address refused, with a reason that never repeats the address itself."""


def check_mssante_address(address: str, allowed_domains: Sequence[str]) -> str:
    """The address, lower-cased, if it is a plain mailbox in an allowed MSSanté domain or one of its subdomains."""
    if len(address) > MAX_ADDRESS_LENGTH:
        raise MssanteAddressError(f"an MSSanté address has at most {MAX_ADDRESS_LENGTH} characters")
    match = _ADDRESS.fullmatch(address)
    if match is None:
        raise MssanteAddressError("not a plain mail address (local part @ domain, no display name, no spaces)")
    domain = match.group(1).lower()
    allowed = [entry.lower().lstrip(".") for entry in allowed_domains]
    if not any(domain == entry or domain.endswith("." + entry) for entry in allowed):
        raise MssanteAddressError(f"the domain is not an MSSanté domain allowed here ({', '.join(allowed)})")
    return address.lower()
