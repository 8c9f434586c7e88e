"""axe-core (npm, installed by `scripts/install.sh --test` into tests/infra/oidc) run in a page by Playwright."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "oidc" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def violations(page) -> list[dict[str, Any]]:
    """The serious and critical axe-core violations of the page as it stands (the context must bypass CSP:
    the pages allow only their own scripts)."""
    if not AXE.exists():
        raise AssertionError("axe-core is missing: run scripts/install.sh --test (npm ci in tests/infra/oidc)")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found
        if v["impact"] in BLOCKING
    ]
