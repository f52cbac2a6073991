"""What a renewal changed that clients or deployments depend on. Pure.

`compare(old, new)` lists `Change(field, before, after)` for each field below that
differs; a renewal with the same profile yields nothing. Facts an older lacme-watch
did not record (no profile, no chain length) are never reported as changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from .. import events as _events
from ..observations import Observation

if TYPE_CHECKING:
    from ..events import Change, ChangeValue

LIFETIME_DAY = 86400


def _lifetime(observation: Observation) -> str:
    """Whole days (hours under two days): CAs backdate by seconds or an hour."""
    seconds = observation.certificate.lifetime_seconds
    if seconds < 2 * LIFETIME_DAY:
        return f"{round(seconds / 3600)}h"
    return f"{round(seconds / LIFETIME_DAY)}d"


def _names(observation: Observation) -> tuple[str, ...]:
    return tuple(sorted({name.lower() for name in observation.domains}))


_Getter = Callable[[Observation], "ChangeValue"]


def _profile(attribute: str) -> _Getter:
    """A getter for one Profile attribute (None when the profile was not recorded)."""

    def get(observation: Observation) -> ChangeValue:
        profile = observation.certificate.profile
        value: ChangeValue = None if profile is None else getattr(profile, attribute)
        return value

    return get


FIELDS: dict[str, _Getter] = {
    "names": _names,
    "extended_key_usage": _profile("extended_key_usage"),
    "key": _profile("key"),
    "signature_algorithm": _profile("signature_algorithm"),
    "issuer": lambda observation: observation.certificate.issuer,
    "issuer_key_id": _profile("issuer_key_id"),
    "lifetime": _lifetime,
    "chain_length": lambda observation: observation.chain_length,
    "crl_distribution_points": _profile("crl_distribution_points"),
    "ocsp_url": _profile("ocsp_urls"),
    "must_staple": _profile("must_staple"),
}
"""Every field certificate_changed can report, in the order it reports them."""

_NEEDS_PROFILE = frozenset(FIELDS) - {"names", "issuer", "lifetime", "chain_length"}


def compare(old: Observation, new: Observation, ignore: Collection[str] = ()) -> list[Change]:
    """The changes from `old` to `new` worth telling, minus the `ignore`d fields."""
    unknown_profile = old.certificate.profile is None or new.certificate.profile is None
    changes: list[Change] = []
    for field, getter in FIELDS.items():
        if field in ignore or (unknown_profile and field in _NEEDS_PROFILE):
            continue
        before, after = getter(old), getter(new)
        if field == "chain_length" and (before is None or after is None):
            continue
        if before != after:
            changes.append(_events.Change(field=field, before=before, after=after))
    return changes
