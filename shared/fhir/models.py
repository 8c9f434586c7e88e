"""The one place that pins the FHIR model version: every module imports FHIR models from here.

France's FR Core is R4; fhir.resources ships R4B (4.3), wire-compatible with R4 for the resources we use.
"""

from __future__ import annotations

from fhir.resources.R4B import FHIRAbstractModel, get_fhir_model_class
from fhir.resources.R4B.address import Address
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.careteam import CareTeam, CareTeamParticipant
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.messageheader import MessageHeader, MessageHeaderResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.slot import Slot
from fhir.resources.R4B.subscription import Subscription
from fhir.resources.R4B.task import Task

FHIR_VERSION = "4.0.1"  # what we announce in CapabilityStatement.fhirVersion: the wire format is R4
MODEL_RELEASE = "R4B"

__all__ = [
    "FHIR_VERSION",
    "MODEL_RELEASE",
    "Address",
    "Appointment",
    "Bundle",
    "BundleEntry",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CareTeamParticipant",
    "CodeableConcept",
    "Coding",
    "Communication",
    "CommunicationRequest",
    "Condition",
    "Consent",
    "ContactPoint",
    "DocumentReference",
    "Encounter",
    "Endpoint",
    "FHIRAbstractModel",
    "Group",
    "HumanName",
    "Identifier",
    "Location",
    "MessageHeader",
    "MessageHeaderResponse",
    "OperationOutcome",
    "OperationOutcomeIssue",
    "Organization",
    "Parameters",
    "Patient",
    "Period",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "Reference",
    "Resource",
    "Schedule",
    "ServiceRequest",
    "Slot",
    "Subscription",
    "Task",
    "model_class",
    "to_json",
]


def model_class(resource_type: str) -> type[FHIRAbstractModel] | None:
    """The R4B model for a resourceType name, or None when FHIR has no such resource."""
    if not resource_type or not resource_type.isidentifier() or not resource_type[0].isupper():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    # data types (Coding, Period...) are models too but never stand alone as a resource
    return cls if issubclass(cls, Resource) else None


def to_json(model: FHIRAbstractModel) -> dict:
    """JSON-able dict of a validated model, without empty elements."""
    return model.model_dump(mode="json", exclude_none=True)
