"""A certificate row's observation as the `certificates` table keeps it: a JSON array.

Schema 8 keeps an observation as the array of its values in field order (its lineage
is the row's own column), not an object of named values: half the text, and `json`
decodes an array of ~40 values in about a third of the time it takes for the same
values in objects (no key strings made and hashed, no dictionaries). A pass where
5,000 certificates came due decodes 5,000 rows. Rows of schema 7 and before (the
object `Observation.to_json()` makes) are still read, and rewritten by the upgrade.

    [1, role, path, domain, [domains],
     [fingerprint, serial, subject, subject_cn, issuer, issuer_cn, [names],
      not_before, not_after, is_ca, is_client, signed_by, profile],
     chain_length, renewal]

`profile` is the JSON text (a string inside the array) of `[[extended_key_usage],
key, signature_algorithm, issuer_key_id, crl_distribution_points, [ocsp_urls],
must_staple]`, or null; `renewal` is the JSON text of the object `policy_to_json()`
makes, or null. Both as text: a store's certificates share a few of each, so reading
one is a look-up of its text (the object made once), not a decoding.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ..detection.renewal import RenewalPolicy, policy_from_json, policy_to_json
from ..instants import format_time, parse_time
from ..observations import CertificateFacts, Observation, Profile, facts_from_values

ROW_VERSION = 1
"""The array's first value: a later layout gets another number."""

_ASCII: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""Paths and names as json.dumps writes them: escaped to ASCII, a lone surrogate of an
undecodable file name included (SQLite keeps only valid UTF-8)."""
_STRING: Callable[[str], str] = json.encoder.encode_basestring
"""A certificate's own texts (valid Unicode, from its DER) as they are."""


def observation_row(observation: Observation) -> str:
    """The row text of an observation, written from its fields (no list built and
    walked by the encoder); json.loads() reads back exactly these values."""
    facts = observation.certificate
    length = observation.chain_length
    renewal = observation.renewal
    return (
        f"[{ROW_VERSION},{_ASCII(observation.role)},{_ASCII(observation.path)},"
        f"{_ASCII(observation.domain)},[{','.join(map(_ASCII, observation.domains))}],"
        f"{_facts_row(facts)},{'null' if length is None else int(length)},"
        f"{'null' if renewal is None else _STRING(json.dumps(policy_to_json(renewal)))}]"
    )


def _facts_row(facts: CertificateFacts) -> str:
    return (
        f"[{_STRING(facts.fingerprint)},{_STRING(facts.serial)},{_STRING(facts.subject)},"
        f"{_optional(facts.subject_cn)},{_issuer_row(facts.issuer, facts.issuer_cn)},"
        f"[{','.join(map(_STRING, facts.names))}],"
        f'"{format_time(facts.not_before)}","{format_time(facts.not_after)}",'
        f"{'true' if facts.is_ca else 'false'},{'true' if facts.is_client else 'false'},"
        f"{_optional(facts.signed_by)},{_profile_row(facts.profile)}]"
    )


def _optional(text: str | None) -> str:
    return "null" if text is None else _STRING(text)


_KEPT = 256
"""Issuers and profiles remembered: a store's certificates share a few of each."""
_ISSUERS: dict[tuple[str, str | None], str] = {}
_PROFILES: dict[int, tuple[Profile, str]] = {}
"""By id, each kept with the object itself: an id is only this object's while it lives."""


def _issuer_row(issuer: str, issuer_cn: str | None) -> str:
    found = _ISSUERS.get((issuer, issuer_cn))
    if found is None:
        found = f"{_STRING(issuer)},{_optional(issuer_cn)}"
        if len(_ISSUERS) < _KEPT:
            _ISSUERS[(issuer, issuer_cn)] = found
    return found


def _profile_row(profile: Profile | None) -> str:
    if profile is None:
        return "null"
    found = _PROFILES.get(id(profile))
    if found is None or found[0] is not profile:
        text = json.dumps(
            [
                list(profile.extended_key_usage),
                profile.key,
                profile.signature_algorithm,
                profile.issuer_key_id,
                profile.crl_distribution_points,
                list(profile.ocsp_urls),
                profile.must_staple,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        found = (profile, _STRING(text))
        if len(_PROFILES) < _KEPT:
            _PROFILES[id(profile)] = found
    return found[1]


def decode_row(lineage: str, raw: str) -> Observation:
    """The observation a row keeps (either layout)."""
    role, path, domain, domains, facts, length, renewal = row_values(raw)
    return Observation(
        lineage=lineage,
        role=role,
        path=path,
        domain=domain,
        domains=domains,
        certificate=facts,
        chain_length=length,
        renewal=renewal,
    )


Values = tuple[Any, str, str, tuple[str, ...], CertificateFacts, int | None, RenewalPolicy | None]
"""An observation's fields after its lineage, in order."""


def row_values(raw: str) -> Values:
    """A row's observation fields after the lineage, in Observation's field order."""
    if raw.startswith("{"):  # schema 7 and before: Observation.to_json()'s object
        old = Observation.from_json(json.loads(raw))
        return (
            old.role,
            old.path,
            old.domain,
            old.domains,
            old.certificate,
            old.chain_length,
            old.renewal,
        )
    version, role, path, domain, domains, facts, length, renewal = json.loads(raw)
    if version != ROW_VERSION:
        raise ValueError(f"a certificate row of layout {version!r}, not {ROW_VERSION}")
    facts[4] = sys.intern(facts[4])  # one CA's many certificates share one copy
    if facts[5] is not None:
        facts[5] = sys.intern(facts[5])
    facts[6] = tuple(facts[6])
    facts[7] = parse_time(facts[7])
    facts[8] = parse_time(facts[8])
    if facts[12] is not None:
        facts[12] = _profile(facts[12])
    return (
        role,
        path,
        domain,
        tuple(domains),
        facts_from_values(facts),
        length,
        None if renewal is None else _renewal(renewal),
    )


_READ_PROFILES: dict[str, Profile] = {}
_READ_RENEWALS: dict[str, RenewalPolicy | None] = {}
"""What rows' texts were read as (frozen values, shared): at most _KEPT of each."""


def _profile(text: str) -> Profile:
    found = _READ_PROFILES.get(text)
    if found is None:
        values = json.loads(text)
        found = Profile(
            extended_key_usage=tuple(values[0]),
            key=values[1],
            signature_algorithm=values[2],
            issuer_key_id=values[3],
            crl_distribution_points=values[4],
            ocsp_urls=tuple(values[5]),
            must_staple=values[6],
        )
        if len(_READ_PROFILES) < _KEPT:
            _READ_PROFILES[text] = found
    return found


def _renewal(text: str) -> RenewalPolicy | None:
    if text in _READ_RENEWALS:
        return _READ_RENEWALS[text]
    found = policy_from_json(json.loads(text))
    if len(_READ_RENEWALS) < _KEPT:
        _READ_RENEWALS[text] = found
    return found
