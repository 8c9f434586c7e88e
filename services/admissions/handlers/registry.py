"""DAC cases, consent and territories: each change is published as the patient's (or postal code's) snapshot."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import domain, views
from services.admissions.adapters.orm import ConsentRow, DacCase, Territory
from services.admissions.commands import CloseDacCase, OpenDacCase, RecordConsent, SetTerritory
from services.admissions.deps import Deps
from services.admissions.handlers.context import careteam_changed, instant, territory_changed
from services.admissions.uow import AdmissionsUnitOfWork
from shared.contracts import TerritoryChanged
from shared.errors import Conflict, NotFound
from shared.events import Role


def open_dac_case(cmd: OpenDacCase, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    key = deps.pseudonymise(cmd.patient)
    with uow:
        now = deps.clock()
        case = DacCase(id=str(uuid.uuid4()), patient_key=key, dac_org_id=cmd.dac_org_id, opened_at=now)
        uow.dac_cases.add(case)
        view = views.dac_case(case)
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
            raise NotFound(f"no DAC case {cmd.case_id}")
        if case.closed_at is None:  # closing twice is a no-op, and publishes nothing
            now = deps.clock()
            case.closed_at = now
            uow.dac_cases.add(case)
            careteam_changed(uow, case.patient_key, "dac-case-closed", now)
        view = views.dac_case(case)
        uow.commit()
        return view


def record_consent(cmd: RecordConsent, uow: AdmissionsUnitOfWork, deps: Deps) -> str:
    key = deps.pseudonymise(cmd.patient)
    with uow:
        now = deps.clock()
        row = uow.consents.get(key)
        if row is None:
            row = ConsentRow(patient_key=key, opposed=cmd.opposed, recorded_by=cmd.recorded_by, recorded_at=now)
        else:
            row.opposed, row.recorded_by, row.recorded_at = cmd.opposed, cmd.recorded_by, now
        uow.consents.add(row)
        careteam_changed(uow, key, "consent-recorded", now)
        uow.commit()
        return domain.derived_id(key, "consent")


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
