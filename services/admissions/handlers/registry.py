"""DAC cases, consent and territories: each change is published as the patient's (or postal code's) snapshot."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import domain, views
from services.admissions.adapters.orm import ConsentRow, DacCase, Territory
from services.admissions.commands import CloseDacCase, RecordConsent, ReferToDac, SetTerritory
from services.admissions.deps import Deps
from services.admissions.handlers.context import careteam_changed, circle_facts, instant, territory_changed
from services.admissions.uow import AdmissionsUnitOfWork
from services.admissions.views import OutsideCircle
from shared.carecircle import Purpose, allows
from shared.contracts import TerritoryChanged
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import Role


def _require(uow: AdmissionsUnitOfWork, key: str, role: Role, org_id: str, purpose: Purpose, action: str) -> None:
    """The kernel's care-circle policy over the registry; outside it (or unknown) is the one audited 404."""
    facts = circle_facts(uow, key)
    if not allows(role, org_id, facts, purpose):
        raise OutsideCircle("patient", action=action, organisation_id=org_id, role=role, known=facts.known)


def refer_to_dac(cmd: ReferToDac, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    """A DAC case opens only on referral by the patient's team (the patient) or admitting hospital (its own stay),
    to the DAC of the patient's territory."""
    key = deps.pseudonymise(cmd.patient)
    with uow:
        _require(uow, key, cmd.referrer_role, cmd.referrer_org_id, Purpose.REFER_TO_DAC, "dac-case.refer")
        postal_code = uow.patients.postal_code(key)
        territory = uow.territories.get(postal_code) if postal_code else None
        if territory is None or territory.dac_org_id != cmd.dac_org_id:
            raise Unprocessable(
                f"DAC {cmd.dac_org_id} does not cover the patient's territory of residence",
                expression=["dac"],
            )
        now = deps.clock()
        # A hospital refers its own stay (its latest admission of the patient), never the patient's other stays.
        stay = uow.admissions.latest_stay(key, cmd.referrer_org_id) if cmd.referrer_role is Role.HOSPITAL else None
        case = DacCase(
            id=str(uuid.uuid4()),
            patient_key=key,
            dac_org_id=cmd.dac_org_id,
            referred_by=cmd.referrer_org_id,
            referrer_role=cmd.referrer_role.value,
            encounter_key=stay.encounter_key if stay else None,
            opened_at=now,
        )
        uow.dac_cases.add(case)
        view = views.dac_referral(case)
        try:
            uow.dac_cases.flush()
            careteam_changed(uow, key, "dac-case-opened", now)
            uow.commit()
        except IntegrityError:
            uow.rollback()
            raise Conflict("this DAC already has an open case for the patient") from None
        return view


def close_dac_case(cmd: CloseDacCase, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    with uow:
        case = uow.dac_cases.get(cmd.case_id)
        if case is None or case.dac_org_id != cmd.dac_org_id:
            if case is not None:  # another DAC's case looks absent, and the attempt is audited
                raise views.ForeignRecord(
                    f"dac-case {cmd.case_id}",
                    action="dac-case.close",
                    organisation_id=cmd.dac_org_id,
                    role=Role.DAC,
                    reason="case of another organisation",
                )
            raise NotFound(f"no dac-case {cmd.case_id}")
        if case.closed_at is None:  # closing twice is a no-op, and publishes nothing
            now = deps.clock()
            case.closed_at = now
            uow.dac_cases.add(case)
            careteam_changed(uow, case.patient_key, "dac-case-closed", now)
        view = views.dac_case(case)
        uow.commit()
        return view


def record_consent(cmd: RecordConsent, uow: AdmissionsUnitOfWork, deps: Deps) -> str:
    """Only the patient's treating team or a hospital that admitted the patient records the patient's word; a
    standing opposition is lifted only by whoever recorded it or the treating team of that time (DESIGN §5)."""
    key = deps.pseudonymise(cmd.patient)
    with uow:
        _require(uow, key, cmd.recorder_role, cmd.recorded_by, Purpose.RECORD_CONSENT, "consent.record")
        now = deps.clock()
        consent_id = domain.derived_id(key, "consent")
        row = uow.consents.get(key)
        standing = row is not None and row.opposed
        if row is not None and standing and cmd.opposed:
            # The patient's word again: its sender reads it back, but who may lift the opposition stays the same.
            row.opposed_by = row.opposed_by or row.recorded_by
            row.recorded_by, row.recorded_at = cmd.recorded_by, now
            _audit(uow, "consent.oppose", cmd, consent_id)
            uow.consents.add(row)
            uow.commit()
            return consent_id
        if row is None:
            row = ConsentRow(patient_key=key, opposed=cmd.opposed, recorded_by=cmd.recorded_by, recorded_at=now)
        if standing:
            _lift(uow, row, cmd, consent_id, now)
        else:
            _audit(uow, "consent.oppose" if cmd.opposed else "consent.permit", cmd, consent_id)
        if cmd.opposed:  # who may lift it: the recorder, and the treating team that holds the patient now
            team = uow.careteams.active_for_patient(key)
            row.opposed_by, row.opposed_team, row.opposed_at = cmd.recorded_by, team.team_org_id if team else None, now
            row.lifted_by = row.lifted_at = None
        row.opposed, row.recorded_by, row.recorded_at = cmd.opposed, cmd.recorded_by, now
        uow.consents.add(row)
        careteam_changed(uow, key, "consent-recorded", now)
        uow.commit()
        return consent_id


def _audit(uow: AdmissionsUnitOfWork, action: str, cmd: RecordConsent, consent_id: str) -> None:
    uow.audit.record(
        action, outcome="ok", organisation_id=cmd.recorded_by, role=cmd.recorder_role.value,
        resource=f"Consent/{consent_id}",
    )


def _lift(uow: AdmissionsUnitOfWork, row: ConsentRow, cmd: RecordConsent, consent_id: str, now: datetime) -> None:
    """Lift the standing opposition if the caller may, audited (and shown on the consent read-back); else 403."""
    opposed_by = row.opposed_by or row.recorded_by
    capacity = domain.lifting_capacity(opposed_by, row.opposed_team, cmd.recorded_by, cmd.recorder_role)
    if capacity is None:
        raise views.OppositionStands(
            f"Consent/{consent_id}", organisation_id=cmd.recorded_by, role=cmd.recorder_role
        )
    row.lifted_by, row.lifted_at = cmd.recorded_by, now
    uow.audit.record(
        "consent.lift", outcome="lifted", organisation_id=cmd.recorded_by, role=cmd.recorder_role.value,
        resource=f"Consent/{consent_id}", detail={"as": capacity, "opposed_by": opposed_by},
    )


def set_territory(cmd: SetTerritory, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    with uow:
        now = deps.clock()
        row = uow.territories.get(cmd.postal_code) or Territory(postal_code=cmd.postal_code, updated_at=now)
        row.cpts_org_id, row.dac_org_id, row.updated_at = cmd.cpts_org_id, cmd.dac_org_id, now
        uow.territories.add(row)
        view = views.territory(row)
        change = TerritoryChanged(
            postal_code=cmd.postal_code, cpts_org_id=cmd.cpts_org_id, dac_org_id=cmd.dac_org_id, at=instant(now)
        )
        territory_changed(uow, change)
        uow.commit()
        return view
