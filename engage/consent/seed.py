"""The network's first consent form, for demonstration data (``engage demo seed``) and tests."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent import decisions, queries, versions
from engage.consent.models import ConsentEvent, ConsentFormVersion, ScopeKind
from engage.consent.receipts import ReceiptIssuer

FIRST_FORM = versions.VersionDetails(
    title="Taking part in MS research through the network",
    summary=(
        "We ask you to share your MS registry records with the research network.\n\n"
        "- Your name, address and ID numbers stay with your registry.\n"
        "- Researchers only see data that cannot show who you are.\n"
        "- An ethics board checks every project first.\n"
        "- Some choices are up to you. You can change them at any time on this site.\n\n"
        "Two choices are needed to take part. All the others are your own call."
    ),
    body=(
        "## Why we ask\n\n"
        "The MS research network brings together national MS registries so that research can "
        "use the experience of many more people than one country could offer. Your registry "
        "already holds records about your MS, such as your diagnosis, treatments, relapses and "
        "disability scores (EDSS).\n\n"
        "## What happens to your data\n\n"
        "Your registry removes your name, address, date of birth and identification numbers and "
        "replaces them with a code before anything leaves it. Research projects analyse the "
        "de-identified data in the network's secure environment, or the analysis is sent to "
        "your registry and only the combined results come back (federated analysis).\n\n"
        "Every project is reviewed by an ethics committee and by the custodians of each "
        "registry, who decide for their registry. Results are published for everyone.\n\n"
        "## Your choices\n\n"
        "Sharing your records and their use in approved MS research are the condition of taking "
        "part. Every other choice is optional and does not change how you are treated. You can "
        "change or withdraw any choice on your consent page at any time; each change gives you "
        "a signed receipt. Withdrawing stops any new use of your data; results of analyses "
        "already finished cannot be taken back.\n\n"
        "## Your rights\n\n"
        "You may ask to see, correct or erase your data, and to complain to your data protection "
        "authority. The coordination centre is the controller of the data held by this platform."
    ),
    ethics_reference="EC-2026-041 (network ethics committee, approved 2 November 2026)",
    language="en",
)

FIRST_SCOPES = [
    versions.ScopeDetails(
        code="SHARE_RECORDS",
        title="Share my registry records with the network",
        explanation="Your registry sends your records to the network without your name, "
        "address or ID numbers.",
        kind=ScopeKind.PURPOSE,
        is_required=True,
    ),
    versions.ScopeDetails(
        code="MS_RESEARCH",
        title="Use my de-identified data in approved registry projects for MS research",
        explanation="Researchers may use your data in MS projects that an ethics board and the "
        "registries have approved.",
        kind=ScopeKind.PURPOSE,
        duo_code="DS-MS",
        is_required=True,
    ),
    versions.ScopeDetails(
        code="OTHER_HEALTH_RESEARCH",
        title="Use my data for research on other health conditions",
        explanation="For example research on other brain diseases, or on how common illnesses "
        "affect people with MS.",
        kind=ScopeKind.PURPOSE,
        duo_code="HMB",
    ),
    versions.ScopeDetails(
        code="COMMERCIAL_RESEARCH",
        title="Allow commercial (for-profit) research",
        explanation="Companies such as drug makers may use your data in approved projects. "
        "Without this, only universities, hospitals and non-profit groups may use it.",
        kind=ScopeKind.PURPOSE,
    ),
    versions.ScopeDetails(
        code="GENOMIC_DATA",
        title="Include my genomic data",
        explanation="Results of DNA tests that your registry or biobank holds about you.",
        kind=ScopeKind.DATA_CATEGORY,
    ),
    versions.ScopeDetails(
        code="IMAGING_DATA",
        title="Include my imaging data",
        explanation="Your MRI scans of the brain and spine, with your name taken off.",
        kind=ScopeKind.DATA_CATEGORY,
    ),
    versions.ScopeDetails(
        code="SURVEY_RECONTACT",
        title="Recontact me about surveys",
        explanation="We may email you a few times a year to ask about your health and daily life.",
        kind=ScopeKind.CONTACT,
    ),
    versions.ScopeDetails(
        code="TRIAL_CONTACT",
        title="Contact me about clinical trials",
        explanation="We may tell you about trials you might be able to join. Saying yes does "
        "not sign you up for anything.",
        kind=ScopeKind.CONTACT,
    ),
]

# The demo participant's first choices (scope code → allowed).
DEMO_CHOICES = {
    "SHARE_RECORDS": True,
    "MS_RESEARCH": True,
    "OTHER_HEALTH_RESEARCH": True,
    "COMMERCIAL_RESEARCH": False,
    "GENOMIC_DATA": True,
    "IMAGING_DATA": True,
    "SURVEY_RECONTACT": True,
    "TRIAL_CONTACT": False,
}


def ensure_first_form(
    session: Session, staff: User, now: datetime, max_grade: float
) -> ConsentFormVersion:
    """Publish the first consent form unless a version exists already; return the current one."""
    existing = session.scalar(sa.select(ConsentFormVersion).limit(1))
    if existing is not None:
        return queries.current_version(session) or existing
    version = versions.create_draft(session, staff, FIRST_FORM, now)
    for details in FIRST_SCOPES:
        versions.add_scope(session, staff, version, details, now)
    versions.publish_version(
        session, staff, version, justification=None, now=now, max_grade=max_grade
    )
    return version


def ensure_demo_choices(
    session: Session, participant: User, now: datetime, issuer: ReceiptIssuer
) -> None:
    """Give the demo participant first choices on the current form, once."""
    version = queries.current_version(session)
    has_events = session.scalar(
        sa.select(sa.exists().where(ConsentEvent.user_id == participant.id))
    )
    if version is None or has_events:
        return
    codes = {scope.code for scope in queries.scopes_of(session, version.id)}
    decisions.record_decisions(
        session,
        participant,
        {code: allowed for code, allowed in DEMO_CHOICES.items() if code in codes},
        version_id=version.id,
        state=None,
        now=now,
        issuer=issuer,
        review=set(DEMO_CHOICES) >= codes,
    )
