"""Observations as the certificates table keeps them, decoded only when first read."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..observations import Observation
from .rows import row_values


class StoredObservation(Observation):
    """A certificate row whose JSON is decoded on first use beyond its lineage and
    fingerprint (the row's own columns), with the identity the database holds for it.

    A pass where thousands of certificates cross a threshold shows detect() the last
    observation of each; for nearly all it compares only their fingerprints, and
    write_snapshot() compares the stored identity with the new one. Decoding every
    one would be most of what those rows cost. Equality and hashing are Observation's.
    """

    __slots__ = ("_fingerprint", "_raw", "stored_identity")

    @classmethod
    def stored(
        cls, lineage: str, fingerprint: str, raw: str, stored_identity: bytes | None
    ) -> StoredObservation:
        observation = object.__new__(cls)
        object.__setattr__(observation, "lineage", lineage)
        object.__setattr__(observation, "_fingerprint", fingerprint)
        object.__setattr__(observation, "_raw", raw)
        object.__setattr__(observation, "stored_identity", stored_identity)
        return observation

    @property
    def fingerprint(self) -> str:
        try:
            return str(object.__getattribute__(self, "_fingerprint"))
        except AttributeError:  # made whole by dataclasses.replace(): no row behind it
            return self.certificate.fingerprint

    def __getattr__(self, name: str) -> Any:
        """Only reached for a slot not set yet: every field once the JSON is decoded.

        The fields are set straight from the row's values (the lineage is the row's
        column): no whole Observation made and copied, for each of the thousands of
        rows a pass shows detect() because they came due."""
        if name not in _FIELDS:
            raise AttributeError(name)
        values = row_values(object.__getattribute__(self, "_raw"))
        put = object.__setattr__
        for field, value in zip(_AFTER_LINEAGE, values, strict=True):
            put(self, field, value)
        return object.__getattribute__(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Observation):
            return NotImplemented
        return _values(self) == _values(other)

    def __hash__(self) -> int:
        return hash(_values(self))


_FIELDS = tuple(field.name for field in dataclasses.fields(Observation))
_AFTER_LINEAGE = tuple(name for name in _FIELDS if name != "lineage")
"""The fields row_values() returns, in its order (the lineage is Observation's first)."""


def _values(observation: Observation) -> tuple[object, ...]:
    return tuple(getattr(observation, name) for name in _FIELDS)


def stored_identity(observation: Observation | None) -> bytes | None:
    """The identity the database holds for a row loaded as a StoredObservation."""
    return getattr(observation, "stored_identity", None)
