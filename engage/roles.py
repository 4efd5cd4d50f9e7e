"""Roles in the network, and where a custodian's request stands: the core's vocabulary for
access control (``engage.security``) and every package, defined once."""

from __future__ import annotations

import enum

from engage.enums import LabelledEnum


class Role(LabelledEnum):
    """A person's primary role in the network."""

    PARTICIPANT = "participant", "Person with MS"
    CLINICIAN = "clinician", "Healthcare professional"
    CUSTODIAN = "custodian", "Data custodian"
    ORGANISATION = "organisation", "MS organisation"
    STAFF = "staff", "Coordination-centre staff"


# The choices people make when they sign up, in the network's words.
SIGN_UP_ROLE_CHOICES = [
    (Role.PARTICIPANT.value, "I have MS"),
    (Role.CLINICIAN.value, "I am a healthcare professional"),
    (Role.CUSTODIAN.value, "I am a data custodian"),
    (Role.ORGANISATION.value, "I work or volunteer at an MS organisation"),
]


class CustodianStatus(enum.StrEnum):
    """Where a data custodian's request for registry rights stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
