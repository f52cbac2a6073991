"""A complete third-party sink and source for lacme-watch (the README's example)."""

from collections.abc import Sequence
from typing import Self

from lacme_watch import (
    CertificateReader,
    Envelope,
    Observation,
    Options,
    Problem,
    ScanResult,
    SinkError,
    SourceError,
    to_json,
)


class FileDropSink:
    """Writes each event as its own JSON file into a directory."""

    def __init__(self, name: str, directory: str) -> None:
        self.name, self.directory = name, directory

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        return cls(name, options.path("directory"))  # unknown keys are rejected for you

    def deliver(self, events: Sequence[Envelope]) -> None:
        for envelope in events:
            try:
                with open(f"{self.directory}/{envelope.id}.json", "w") as out:
                    out.write(to_json(envelope))
            except OSError as exc:
                raise SinkError(self.name, str(exc)) from exc  # retried from the outbox


class InventorySource:
    """Watches the certificate files an inventory lists, one path per line."""

    def __init__(self, inventory: str) -> None:
        self.inventory = inventory
        self.id = f"inventory:{inventory}"  # stable: the state database keys on it

    @classmethod
    def from_options(cls, options: Options) -> Self:
        return cls(options.path("inventory"))

    def scan(self, reader: CertificateReader, cursor: str | None = None) -> ScanResult:
        listed = reader.read_text(self.inventory)  # capped like every other read
        if isinstance(listed, Problem):  # the whole source is unreadable: say so
            raise SourceError(listed.path, listed.reason, listed.detail)
        observations: list[Observation] = []
        problems: list[Problem] = []
        for path in (line.strip() for line in listed.splitlines()):
            if not path or path.startswith("#"):
                continue
            found = reader.bundle(lineage=path, path=path)  # never opens a private key
            if isinstance(found, Problem):
                problems.append(found)  # that file's problem, not the source's
            else:
                observations += found
        return ScanResult(observations=tuple(observations), problems=tuple(problems))
