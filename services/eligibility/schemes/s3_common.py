"""Criteria shared by the two steps of Tillväxtverket's S3 pilot (seed 003).

Source: Tillväxtverket, "Kluster med koppling till smart specialisering – S3-piloten" (the 2018
call; the page carries no date), seed `../shared/seeds/003_2a022b9e52d62383.txt`: the applicant is
the cluster organisation, "en juridisk person eller representeras av en juridisk person".
"""

from __future__ import annotations

from datetime import date

from services.eligibility.parameters import InForce
from services.eligibility.schemes.common import (
    Verdict,
    beneficiary_check,
    criterion,
    day,
    failed,
    local_submission,
    moment,
    passed,
)
from shared.events import Application


@criterion("cluster_organisation", "s3.applicant")
def cluster_organisation(application: Application, p: InForce) -> Verdict:
    """The organisation leading and coordinating the cluster applies.

    003: "Det är klusterorganisationen som söker".
    """
    if application.applicant.is_cluster_organisation:
        return passed("s3.applicant.cluster_organisation")
    return failed("s3.applicant.not_cluster_organisation")


@criterion("legal_personality", "s3.applicant")
def legal_personality(application: Application, p: InForce) -> Verdict:
    """A legal person, or represented by one."""
    applicant = application.applicant
    if applicant.legal_person:
        return passed("s3.applicant.legal_person")
    if applicant.represented_by_legal_person:
        return passed("s3.applicant.represented_by_legal_person")
    return failed("s3.applicant.no_legal_person")


beneficiary = criterion("beneficiary", "s3.beneficiary")(beneficiary_check("s3"))
"""The cluster organisation, a legal person or represented by one, identified by its organisationsnummer."""


def deadline_verdict(application: Application, p: InForce, deadline: date, prefix: str) -> Verdict:
    """On time through 23:59:59.999999 of the deadline day in Europe/Stockholm (any summer time included)."""
    local = local_submission(application, p)
    figures = {"submitted_at": moment(local), "deadline": day(deadline)}
    if local.date() <= deadline:
        return passed(f"{prefix}.on_time", **figures)
    return failed(f"{prefix}.missed", **figures)
