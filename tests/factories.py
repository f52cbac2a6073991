"""Observations and scans for the pure detection tests, with sensible defaults."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from lacme_watch.observations import CertificateFacts, Observation, Problem, ScanResult


def facts(
    *,
    not_before: datetime,
    not_after: datetime,
    fingerprint: str = "aa" * 32,
    **overrides: Any,
) -> CertificateFacts:
    values: dict[str, Any] = {
        "fingerprint": fingerprint,
        "serial": "01",
        "subject": "CN=www.example.test",
        "subject_cn": "www.example.test",
        "issuer": "CN=Test CA",
        "issuer_cn": "Test CA",
        "names": ("www.example.test",),
        "not_before": not_before,
        "not_after": not_after,
        "is_ca": False,
        "is_client": False,
    }
    values.update(overrides)
    return CertificateFacts(**values)


def observation(
    *,
    now: datetime,
    days_left: float,
    lifetime_days: float = 90,
    lineage: str = "certs/www.example.test",
    fingerprint: str | None = None,
    role: str = "leaf",
    **fact_overrides: Any,
) -> Observation:
    not_after = now + timedelta(days=days_left)
    not_before = not_after - timedelta(days=lifetime_days)
    fp = fingerprint or hashlib.sha256(f"{lineage}|{not_after.isoformat()}".encode()).hexdigest()
    return Observation(
        lineage=lineage,
        role=role,  # type: ignore[arg-type]  # tests pass the literal names
        path=f"/store/{lineage}/fullchain.pem",
        domain=lineage.rsplit("/", 1)[-1],
        domains=(lineage.rsplit("/", 1)[-1],),
        certificate=facts(
            not_before=not_before, not_after=not_after, fingerprint=fp, **fact_overrides
        ),
    )


def scan(
    *observations: Observation, problems: tuple[Problem, ...] = (), failed: bool = False
) -> ScanResult:
    return ScanResult(observations=observations, problems=problems, failed=failed)


def renewed(
    old: Observation, *, now: datetime, days_left: float, lifetime_days: float = 90
) -> Observation:
    fresh = observation(
        now=now, days_left=days_left, lifetime_days=lifetime_days, lineage=old.lineage
    )
    return replace(fresh, domain=old.domain, domains=old.domains)
