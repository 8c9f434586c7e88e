"""FHIR JSON responses."""

from __future__ import annotations

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON
