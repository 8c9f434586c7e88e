"""The event catalogue: every event Relais carries. (Stub: names are stable; FHIR shapes are added below.)"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ADMISSION_RECORDED = "admission.recorded"
    ADMISSION_CORRECTED = "admission.corrected"
    ADMISSION_CANCELLED = "admission.cancelled"
    DISCHARGE_RECORDED = "discharge.recorded"
    DISCHARGE_CORRECTED = "discharge.corrected"
    DISCHARGE_CANCELLED = "discharge.cancelled"
    HANDOFF_PROPOSED = "handoff.proposed"
    HANDOFF_ACCEPTED = "handoff.accepted"
    HANDOFF_DECLINED = "handoff.declined"
    HANDOFF_EXPIRED = "handoff.expired"
    FOLLOWUP_DUE = "followup.due"
    FOLLOWUP_MISSED = "followup.missed"
    SNP_REQUESTED = "snp.requested"
    SNP_OFFERED = "snp.offered"
    SNP_BOOKED = "snp.booked"
    SNP_FULFILLED = "snp.fulfilled"
    SNP_NOSHOW = "snp.noshow"
    SNP_EXPIRED = "snp.expired"
    CARETEAM_CHANGED = "careteam.changed"
    NOTIFICATION_READ = "notification.read"


class Role(StrEnum):
    HOSPITAL = "hospital"
    TEAM = "team"
    CPTS = "cpts"
    DAC = "dac"
    SAS = "sas"
    ADMIN = "admin"


# Kafka topics. Domain topics are keyed by patient pseudonym, notify topics by recipient organisation.
TOPIC_ADMISSIONS = "relais.admissions"
TOPIC_DISCHARGE = "relais.discharge"
TOPIC_SNP = "relais.snp"
TOPIC_CARETEAM = "relais.careteam"
TOPIC_RECEIPTS = "relais.receipts"
TOPIC_NOTIFY_TEAM = "relais.notify.team"
TOPIC_NOTIFY_CPTS = "relais.notify.cpts"
TOPIC_NOTIFY_DAC = "relais.notify.dac"
