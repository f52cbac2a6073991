"""Chains and CRLs: broken or expiring chains, served names that do not match, CRLs that
expire or were not copied where the server reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .base import CertificateEvent, Event, day


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainProblem(Event):
    """A stored or served chain that clients may refuse although its leaf is fine."""

    kind: ClassVar[str] = "chain_problem"
    heading: ClassVar[str] = "Broken chains"
    urgency: ClassVar[int] = 16
    domain: str
    location: str
    """The file holding the chain, or `host:port` of the endpoint serving it."""
    reason: str
    """incomplete, misordered, wrong_issuer, expired, expiring,
    intermediate_expires_before_leaf or revoked."""
    certificate_subject: str
    certificate_serial: str
    certificate_fingerprint: str
    certificate_not_after: datetime
    threshold: str | None = None
    """For `expiring`: the threshold crossed (`30d`, `10%`)."""

    @property
    def subject(self) -> str:
        return self.domain

    def identity(self) -> tuple[str, ...]:
        return (
            self.lineage or "",
            self.location,
            self.fingerprint or "",
            self.reason,
            self.certificate_fingerprint,
            self.threshold or "",
        )

    def summary(self) -> str:
        hint = (
            ": nothing sent or trusted signed it"
            " (send its intermediate; a private CA's root goes in `trust:`)"
            if self.reason == "incomplete"
            else ""
        )
        return (
            f"{self.kind}: {self.domain} at {self.location}: {self.reason}"
            f" ({self.certificate_subject}, until {day(self.certificate_not_after)}){hint}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentMismatch(CertificateEvent):
    """A TLS endpoint serves a certificate that does not cover the name it was asked for."""

    kind: ClassVar[str] = "deployment_mismatch"
    heading: ClassVar[str] = "Serving the wrong certificate"
    urgency: ClassVar[int] = 17
    requested_name: str
    """The SNI host name the endpoint was asked for."""

    def identity(self) -> tuple[str, ...]:
        return (self.lineage or "", self.fingerprint or "", self.requested_name)

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.host or self.domain} serves {', '.join(self.domains)},"
            f" not {self.requested_name}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlExpiring(Event):
    """A CRL nears its nextUpdate: once it passes, OpenVPN and mTLS servers refuse everyone."""

    kind: ClassVar[str] = "crl_expiring"
    heading: ClassVar[str] = "CRL about to lapse"
    urgency: ClassVar[int] = 12
    authority: str
    next_update: datetime
    days_remaining: int
    crl_number: int | None = None
    threshold: str | None = None

    @property
    def subject(self) -> str:
        return self.authority

    def identity(self) -> tuple[str, ...]:
        return (self.path or "", self.fingerprint or "", self.threshold or "")

    def summary(self) -> str:
        if self.days_remaining < 0:
            state = f"EXPIRED {-self.days_remaining} days ago"
        else:
            state = f"{self.days_remaining} days left"
        return f"{self.kind}: {self.path} next update {day(self.next_update)} ({state})"


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlDeploymentStale(Event):
    """A deployed copy of a CRL is older than the one its authority has generated."""

    kind: ClassVar[str] = "crl_deployment_stale"
    heading: ClassVar[str] = "CRL not deployed"
    urgency: ClassVar[int] = 19
    authority: str
    deployed_path: str
    deployed_this_update: datetime
    current_path: str
    current_this_update: datetime
    deployed_number: int | None = None
    current_number: int | None = None
    """None when the CA writes no CRL number (easy-rsa 3.1): thisUpdate tells them apart."""

    @property
    def subject(self) -> str:
        return self.authority

    def identity(self) -> tuple[str, ...]:
        return (self.deployed_path, str(self.current_number), self.current_this_update.isoformat())

    def summary(self) -> str:
        def label(number: int | None, this_update: datetime) -> str:
            return f"CRL {number}" if number is not None else f"a CRL of {day(this_update)}"

        return (
            f"{self.kind}: {self.deployed_path} holds"
            f" {label(self.deployed_number, self.deployed_this_update)},"
            f" {self.current_path} {label(self.current_number, self.current_this_update)}"
        )
