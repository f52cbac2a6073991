"""Reading certificate files for a source's scan: the file cache, parsing, bundles.

Every source reads through one :class:`CertificateReader`, whose every read goes
through the guards of guarded.py (the real target checked, never a key, capped). When
a file's identity (device, inode, size, mtime) is the one remembered from the last
pass, what was parsed then is reused without opening it: large stores rescan cheaply.
Whatever one certificate does to the parser or to `describe()` is that file's
`bad_certificate`, never the pass's exception.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from cryptography import x509

from .. import boundedjson
from ..detection.chains import Finding, is_chain_file
from ..detection.renewal import RenewalPolicy
from ..observations import CertificateFacts, Observation, Problem
from . import forked
from .certfacts import (
    Parsed,
    bad_certificate,
    decode_facts,
    describe,
    encode_facts,
    encode_one,
    fingerprint,
    parse_pem_or_der,
    parse_with_der,
    signers_digest,
    verifies,
)
from .guarded import (
    DEFAULT_MAX_FILE_SIZE,
    GuardedReads,
    Identity,
    identity_of,
    looks_like_private_key,
    undecodable_name,
)


class CachedFile(NamedTuple):
    """What was parsed from one file, and the identity it had then (a tuple: a rescan
    loads one per file of the store, and a frozen dataclass costs several times more)."""

    identity: Identity
    signers: str
    payload: str | None
    """The parse result as stored; None while it is still only in the state database
    (a large store's payloads are fetched one by one as files are reused)."""


class CertificateReader(GuardedReads):
    """Reads certificates and metadata for one source's scan, with the file-identity cache."""

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        chain: bool = True,
        signers: Sequence[x509.Certificate] = (),
        cache: Mapping[str, CachedFile] | None = None,
        payloads: Callable[[str], str | None] | None = None,
        judge: Callable[[Sequence[x509.Certificate], Sequence[bytes]], list[Finding]] | None = None,
    ) -> None:
        super().__init__(max_file_size=max_file_size)
        self.chain = chain
        self._signers = tuple(signers)
        self._signers_digest = signers_digest(self._signers)
        self._signer_fingerprints = tuple(fingerprint(signer) for signer in self._signers)
        self._previous = cache or {}
        self._payloads = payloads
        self.files: dict[str, CachedFile] = {}
        """Every file read or reused in this scan: the cache for the next one."""
        self.parsed = 0
        self.reused = 0
        self.bundles: list[tuple[str, str, tuple[CertificateFacts, ...]]] = []
        """(lineage, path, certificates in file order) of every file read through
        bundle(): the chains to check."""
        self._chain_described: dict[bytes, tuple[CertificateFacts, str]] = {}
        self._batch: forked.Batch | None = None
        self._chains: set[str] = set()
        """Chain lineages already observed in this scan (one CA's root rides in every
        bundle: one observation of it, not one per bundle)."""
        self._judge = judge
        self.structures: dict[str, list[Finding]] = {}
        """What `judge` (verify.py's chain structure) found of each chain file parsed in
        this scan, while its certificates were at hand."""

    # -- public API for sources ------------------------------------------------

    def read_certificates(self, path: str) -> tuple[CertificateFacts, ...] | Problem:
        """Every certificate in a PEM (bundle, text-prefixed) or DER file, in file order.

        Files named like private keys are not opened and yield nothing. Other PEM
        blocks (keys, CSRs, parameters) are skipped without noise.
        """
        if looks_like_private_key(path):
            return ()
        if (batch := self._batch) is not None and path in batch.paths:
            found = self._taken(batch, path)
            if found is not _NOT_TAKEN:
                return found  # type: ignore[return-value]
        read: tuple[CertificateFacts, ...] | Problem = self._cached(
            path, self._parse_certificates, decode_facts
        )
        return read

    def prefetch(
        self, paths: Sequence[str], *, share: float = 0.5, metadata: str | None = None
    ) -> None:
        """A hint: these certificate files are about to be read (each after the JSON
        document `metadata` names in its directory, when given). When most are new to
        the cache (a first pass), a second process reads `share` of them (more than
        half when this one has other work first: slices.py commits a slice)."""
        if self._batch is not None or len(self._previous) * 2 >= len(paths):
            return
        wanted = [path for path in paths if not looks_like_private_key(path)]
        self._batch = forked.start(self, wanted, share, metadata)

    def finish(self) -> forked.Batch | None:
        """After the source's scan: what the other process read and counted joins
        this scan's (its files it was never asked for are simply dropped). Returns
        its batch, for how long it took (None: no other process read for this one)."""
        batch, self._batch = self._batch, None
        if batch is None:
            return None
        batch.take("")  # waits for it, if nothing asked yet
        self.parsed += batch.parsed
        self.stat_record.extend(*batch.recorded)
        return batch

    def forget(self) -> None:
        """Drop what was read so far (a slice of a first pass was committed: slices.py);
        the stat record and the chain certificates already observed stay."""
        self.files = {}
        self.bundles = []
        self.structures = {}
        self.forget_directories()

    @property
    def signers(self) -> tuple[x509.Certificate, ...]:
        """The watched CAs this reader checks signatures against (and judges chains by)."""
        return self._signers

    @property
    def previous(self) -> Mapping[str, CachedFile]:
        """Last pass's file cache, as this reader was given it."""
        return self._previous

    def without_database(self) -> None:
        """No payload is fetched from the state database (a forked child's reader)."""
        self._payloads = None

    def read_json(self, path: str) -> object | Problem:
        """A small JSON document (lacme's meta.json), through the same caps and cache,
        parsed with bounded depth (see boundedjson)."""
        if (batch := self._batch) is not None and path in batch.paths:
            taken = self._taken(batch, path)
            if taken is not _NOT_TAKEN:
                return taken
        found: object = self._cached(path, _parse_json, json.loads)
        return found

    def read_text(self, path: str) -> str | Problem:
        """A small text file (easy-rsa's index.txt), capped like every other read."""
        read = self._read(path)
        if isinstance(read, Problem):
            return read
        return read[0].decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes | Problem:
        """A small file's bytes, uncached and capped (a CRL, PEM or DER)."""
        if looks_like_private_key(path):
            return Problem(path, "no_certificate_found", "named like a private key: not opened")
        read = self._read(path)
        return read if isinstance(read, Problem) else read[0]

    def load_certificates(self, path: str) -> list[x509.Certificate] | Problem:
        """Parsed certificates, uncached: for the few CA files whose keys verify others."""
        if looks_like_private_key(path):
            return []
        read = self._read(path)
        if isinstance(read, Problem):
            return read
        parsed = parse_pem_or_der(path, read[0])
        if isinstance(parsed, Problem):
            return parsed
        if (described := self.files.get(path)) is not None and described.identity == read[1]:
            return parsed  # these very bytes were described in this scan
        try:  # the caller describes them: a certificate that cannot be described is bad here
            for certificate in parsed:
                describe(certificate)
        except Exception as exc:  # whatever one certificate raises is its problem
            return bad_certificate(path, exc)
        return parsed

    def bundle(
        self,
        *,
        lineage: str,
        path: str,
        domain: str | None = None,
        domains: Sequence[str] = (),
        renewal: RenewalPolicy | None = None,
    ) -> list[Observation] | Problem:
        """Observations for a certificate file: its first certificate is the lineage's leaf
        (renewed by the owner's `renewal` policy, when the store knows it).

        With `chain: full` the other certificates become `chain` observations, keyed
        by fingerprint so an intermediate shared by many bundles is watched once.
        """
        if unreadable := undecodable_name(path, lineage):
            return unreadable
        found = self.read_certificates(path)
        if isinstance(found, Problem):
            return found
        self.bundles.append((lineage, path, found))
        observations: list[Observation] = []
        for position, facts in enumerate(found):
            if position and not self.chain:
                break
            if position == 0:
                names = tuple(domains) or facts.names
                observations.append(
                    Observation(
                        lineage=lineage,
                        role="leaf",
                        path=path,
                        domain=domain or (names[0] if names else facts.subject),
                        domains=names,
                        certificate=facts,
                        chain_length=len(found),
                        renewal=renewal,
                    )
                )
            elif (chain := f"chain:{facts.fingerprint}") not in self._chains:
                self._chains.add(chain)  # downstream keeps the first bundle's: so do we
                label = facts.subject_cn or facts.subject
                observations.append(
                    Observation(
                        lineage=chain,
                        role="chain",
                        path=path,
                        domain=label,
                        domains=facts.names or (label,),
                        certificate=facts,
                    )
                )
        return observations

    def unchanged(self, path: str) -> bool:
        """True when this scan reused the file from last pass's cache (same identity)."""
        cached = self.files.get(path)
        return cached is not None and cached is self._previous.get(path)

    # -- internals -------------------------------------------------------------

    def _taken(self, batch: forked.Batch, path: str) -> object:
        """What the other process read at `path` (forked.py), with its cache entry and
        chain structure; _NOT_TAKEN when it delivered nothing for it."""
        taken = batch.take(path)
        if taken is None:
            return _NOT_TAKEN
        result, cached, judged = taken
        if cached is not None:
            self.files[path] = cached
        if judged is not None:
            self.structures[path] = judged
        return result

    def _cached(
        self,
        path: str,
        parse: Callable[[str, bytes], tuple[Any, str] | Problem],
        decode: Callable[[str], Any],
    ) -> Any:
        """Parse a file, or reuse last pass's result when its identity is unchanged
        (`parse` gives the result and its payload for the cache; `decode` turns a
        payload back into the result)."""
        located = self._locate(path)
        if isinstance(located, Problem):
            return located
        target, status = located
        previous = self._previous.get(path)
        if (
            previous is not None
            and previous.identity == identity_of(status)
            and previous.signers == self._signers_digest
        ):
            payload = previous.payload
            if payload is None and self._payloads is not None:
                payload = self._payloads(path)
            if payload is not None:
                self.files[path] = previous
                self.reused += 1
                return decode(payload)
        read = self._read_at(path, target, status)
        if isinstance(read, Problem):
            return read
        content, identity = read
        parsed = parse(path, content)
        if isinstance(parsed, Problem):
            return parsed
        result, payload = parsed
        self.files[path] = CachedFile(identity, self._signers_digest, payload)
        return result

    def _parse_certificates(
        self, path: str, content: bytes
    ) -> tuple[tuple[CertificateFacts, ...], str] | Problem:
        """The file's facts and their payload for the cache."""
        loaded = parse_with_der(path, content)
        if isinstance(loaded, Problem):
            return loaded
        self.parsed += 1
        facts: list[CertificateFacts] = []
        lines: list[str] = []
        for position, (certificate, der) in enumerate(loaded, start=1):
            try:  # cryptography parses lazily: describing is where a bad field shows
                described, line = self._described(certificate, der, chain=position > 1)
            except Exception as exc:  # one certificate's fault, never the pass's
                where = f"certificate {position}: " if len(loaded) > 1 else ""
                return bad_certificate(path, exc, where)
            facts.append(described)
            lines.append(line)
        self._judge_chain(path, loaded, facts)
        return tuple(facts), encode_facts(lines)

    def _judge_chain(
        self, path: str, loaded: Sequence[Parsed], facts: Sequence[CertificateFacts]
    ) -> None:
        """The structure of a file verify.py will judge as a chain (the same rule)."""
        if self._judge is not None and is_chain_file(path, facts):
            with contextlib.suppress(Exception):  # the checks read it again, and decide
                parsed = [certificate for certificate, _ in loaded]
                self.structures[path] = self._judge(parsed, [der for _, der in loaded])

    def _described(
        self, certificate: x509.Certificate, der: bytes, *, chain: bool
    ) -> tuple[CertificateFacts, str]:
        """Its facts and payload line. The intermediate every bundle of a CA carries is
        described once per scan (one object, not one per bundle): a chain certificate's
        result is kept by its DER (equal bytes, the same certificate: no hash per bundle)."""
        if chain and (known := self._chain_described.get(der)) is not None:
            return known
        described = self._facts(certificate, der)
        line = encode_one(described)  # the payload: also proves it can be stored
        line.encode("utf-8")  # a lone surrogate from odd bytes cannot be
        if chain:
            self._chain_described[der] = (described, line)
        return described, line

    def _facts(self, certificate: x509.Certificate, der: bytes) -> CertificateFacts:
        facts = describe(certificate, der)
        for signer, signer_fingerprint in zip(
            self._signers, self._signer_fingerprints, strict=True
        ):
            if facts.fingerprint != signer_fingerprint and verifies(certificate, signer):
                return replace(facts, signed_by=signer_fingerprint)
        return facts


_NOT_TAKEN = object()
"""Nothing from the other process for this path: read it here."""


def _parse_json(path: str, content: bytes) -> tuple[object, str] | Problem:
    try:
        return boundedjson.loads_and_dump(content)
    except ValueError as exc:
        return Problem(path, "bad_metadata", f"not JSON: {exc}")
