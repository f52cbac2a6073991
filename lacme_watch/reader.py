"""Reading certificate files as hostile input: capped, never a private key, never a hang.

Every source reads through one :class:`CertificateReader`. It resolves a path to its
real target first and applies every guard to that target (a key's name, the store's
root), then stats it and, when its identity (device, inode, size, mtime) is the one
remembered from the last pass, reuses what was parsed then without opening it: large
stores rescan cheaply. Whatever one certificate does to the parser or to `describe()`
is that file's `bad_certificate`, never the pass's exception.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from . import boundedjson, forked
from .certfacts import (
    bad_certificate,
    decode_facts,
    describe,
    encode_facts,
    encode_one,
    fingerprint,
    parse_pem_or_der,
    signers_digest,
    verifies,
)
from .chains import Finding
from .observations import CertificateFacts, Observation, Problem
from .options import Options
from .statrecord import Recorder

DEFAULT_MAX_FILE_SIZE = 4 * 1024 * 1024

# mykey.pem, server+key.pem, ssh's id_ecdsa, PKCS#12 and Java key stores ...
_KEY_FILE_NAME = re.compile(
    r"(^|[._+@-]|my)(priv(ate)?[._+-]?)?key([._+@-]|\d|$)"
    r"|\.key$|^id_(rsa|dsa|ecdsa|ed25519)([._-]|$)|\.(p12|pfx|jks|keystore|ppk)$",
    re.IGNORECASE,
)

Identity = tuple[int, int, int, int]
FOLLOW_SYMLINKS = ("inside", "any")


def looks_like_private_key(path: str | Path) -> bool:
    """True for file names that ACME clients and CAs give private keys; those are never opened."""
    return bool(_KEY_FILE_NAME.search(os.path.basename(path)))


def follows_any_symlink(options: Options) -> bool:
    """A store's `follow_symlinks`: `inside` (default) keeps every read inside its root."""
    return options.choice("follow_symlinks", FOLLOW_SYMLINKS, "inside") == "any"


def printable(text: str) -> str:
    """A path or name as UTF-8-safe text: undecodable bytes shown as `\\udcff` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def undecodable_name(path: str, lineage: str | None = None) -> Problem | None:
    """A Problem for a file name that is not UTF-8 (it could be neither stored nor shown)."""
    if path.isascii() and (lineage is None or lineage.isascii()):
        return None  # the common case, checked in constant time
    if printable(path) == path and (lineage is None or printable(lineage) == lineage):
        return None
    return Problem(
        printable(path),
        "bad_file_name",
        "the name is not UTF-8: rename it",
        lineage=printable(lineage or path),
    )


class CachedFile(NamedTuple):
    """What was parsed from one file, and the identity it had then (a tuple: a rescan
    loads one per file of the store, and a frozen dataclass costs several times more)."""

    identity: Identity
    signers: str
    payload: str | None
    """The parse result as stored; None while it is still only in the state database
    (a large store's payloads are fetched one by one as files are reused)."""


class CertificateReader:
    """Reads certificates and metadata for one source's scan, with the file-identity cache."""

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        chain: bool = True,
        signers: Sequence[x509.Certificate] = (),
        cache: Mapping[str, CachedFile] | None = None,
        payloads: Callable[[str], str | None] | None = None,
        judge: Callable[[Sequence[x509.Certificate]], list[Finding]] | None = None,
    ) -> None:
        self.max_file_size = max_file_size
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
        self.roots: tuple[str, ...] = ()
        self.follow_any = False
        self._real_directories: dict[str, str] = {}
        self._prefixes: tuple[str, ...] = ()
        self._chain_described: dict[bytes, tuple[CertificateFacts, str]] = {}
        self._batch: forked.Batch | None = None
        self._chains: set[str] = set()
        """Chain lineages already observed in this scan (one CA's root rides in every
        bundle: one observation of it, not one per bundle)."""
        self._judge = judge
        self.structures: dict[str, list[Finding]] = {}
        """What `judge` (verify.py's chain structure) found of each chain file parsed in
        this scan, while its certificates were at hand."""
        self.stat_record = Recorder()
        """Every directory and file this scan looked at (see statrecord.py)."""

    def confine(self, *roots: str, follow_any: bool = False) -> None:
        """Keep every read inside these directories (resolved): a symlink whose target
        leaves them is `outside_store`, unless the store says `follow_symlinks: any`."""
        self.roots = tuple(os.path.realpath(root) for root in roots)
        self.follow_any = follow_any
        self._prefixes = tuple(root.rstrip(os.sep) + os.sep for root in self.roots)

    def will_list(self, directory: str) -> None:
        """Call before listing a directory (or asking whether a file is in it) yourself:
        it joins the stat record, so a file added to it makes the next pass scan again."""
        try:
            status = os.lstat(directory)
        except OSError:
            self.stat_record.distrust()  # a store root that is not there: nothing to compare
            return
        self.stat_record.saw(directory, status)

    def stat_record_bytes(self) -> bytes | None:
        """This scan's stat record as kept (None: the next pass must read in full)."""
        return self.stat_record.record(os.path.commonpath(self.roots) if self.roots else "")

    def inside(self, real_path: str) -> bool:
        """Whether a resolved path is within the store's roots (or confinement is off)."""
        if self.follow_any or not self.roots:
            return True
        return real_path.startswith(self._prefixes) or real_path in self.roots

    # -- public API for sources ------------------------------------------------

    def read_certificates(self, path: str) -> tuple[CertificateFacts, ...] | Problem:
        """Every certificate in a PEM (bundle, text-prefixed) or DER file, in file order.

        Files named like private keys are not opened and yield nothing. Other PEM
        blocks (keys, CSRs, parameters) are skipped without noise.
        """
        if looks_like_private_key(path):
            return ()
        if self._batch is not None and path in self._batch.paths:
            taken = self._batch.take(path)
            if taken is not None:  # read by the other process (forked.py)
                result, cached, judged = taken
                if cached is not None:
                    self.files[path] = cached
                if judged is not None:
                    self.structures[path] = judged
                return result  # type: ignore[no-any-return]
        found: tuple[CertificateFacts, ...] | Problem = self._cached(
            path, self._parse_certificates, decode_facts
        )
        return found

    def prefetch(self, paths: Sequence[str]) -> None:
        """A hint from a source: these certificate files are about to be read. When most
        are new to the cache (a first pass), a second process reads half of them."""
        if self._batch is not None or len(self._previous) * 2 >= len(paths):
            return
        wanted = [path for path in paths if not looks_like_private_key(path)]
        self._batch = forked.start(self, wanted)

    def finish(self) -> None:
        """After the source's scan: what the other process read and counted joins
        this scan's (its files it was never asked for are simply dropped)."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        batch.take("")  # waits for it, if nothing asked yet
        self.parsed += batch.parsed
        self.stat_record.extend(*batch.recorded)

    def without_database(self) -> None:
        """No payload is fetched from the state database (a forked child's reader)."""
        self._payloads = None

    def read_json(self, path: str) -> object | Problem:
        """A small JSON document (lacme's meta.json), through the same caps and cache,
        parsed with bounded depth (see boundedjson)."""
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
    ) -> list[Observation] | Problem:
        """Observations for a certificate file: its first certificate is the lineage's leaf.

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
        identity = _identity(status)
        if (
            previous is not None
            and previous.identity == identity
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

    def _locate(self, path: str) -> tuple[str, os.stat_result] | Problem:
        """The real file behind `path` and its status, once every guard passed on it.

        Guards look at the target, not the link: a `cert.pem` that resolves to
        `privkey.pem`, or to `/etc/shadow` outside the store, is never opened.
        """
        if unreadable := undecodable_name(path):
            return unreadable
        parent, name = os.path.split(path)
        target = os.path.join(self._real_directory(parent), name)
        try:
            status = os.lstat(target)
            if stat.S_ISLNK(status.st_mode):
                self.stat_record.distrust()
                target = os.path.realpath(target)
                status = os.stat(target)
        except OSError as exc:
            return _problem_from_os_error(path, exc)
        self.stat_record.saw(target, status)
        if target != path and looks_like_private_key(target):
            return Problem(
                path,
                "no_certificate_found",
                f"resolves to {printable(target)}, named like a private key: not opened",
            )
        if not self.inside(target):
            return Problem(
                path,
                "outside_store",
                f"resolves to {printable(target)}, outside {', '.join(self.roots)}:"
                " not followed (set follow_symlinks: any on this store to read it)",
            )
        return target, status

    def _real_directory(self, directory: str) -> str:
        """realpath(directory), remembered per directory for this scan: a store of many
        directories costs one lstat per directory, not one per path component."""
        real = self._real_directories.get(directory)
        if real is None:
            parent, name = os.path.split(directory)
            if name in ("", ".", "..") or not parent or parent == directory:
                real = os.path.realpath(directory)
            else:
                candidate = os.path.join(self._real_directory(parent), name)
                real = self._resolved_directory(candidate)
            self._real_directories[directory] = real
        return real

    def _resolved_directory(self, candidate: str) -> str:
        """A directory's real path; one inside the store joins the stat record (its
        files are looked for by name: one created there changes its mtime)."""
        try:
            status = os.lstat(candidate)
        except OSError:
            return candidate  # the file's own lstat reports what is missing
        if stat.S_ISLNK(status.st_mode):
            real = os.path.realpath(candidate)
            if self.inside(real):
                self.stat_record.distrust()
            return real
        if self.inside(candidate):
            self.stat_record.saw(candidate, status)
        return candidate

    def _read(self, path: str) -> tuple[bytes, Identity] | Problem:
        located = self._locate(path)
        if isinstance(located, Problem):
            return located
        return self._read_at(path, *located)

    def _read_at(
        self, path: str, target: str, checked: os.stat_result
    ) -> tuple[bytes, Identity] | Problem:
        """The checked target's bytes (at most max_file_size) and the identity they were
        read at. O_NOFOLLOW and the inode comparison close the race with a swapped file."""
        if not stat.S_ISREG(checked.st_mode):
            return Problem(path, "no_certificate_found", "not a regular file")
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(target, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the target was checked: it became a link since
                return Problem(path, "io_error", "replaced by a symlink while being read")
            return _problem_from_os_error(path, exc)
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != (checked.st_dev, checked.st_ino):
                return Problem(path, "io_error", "replaced while being read")
            if not stat.S_ISREG(status.st_mode):
                return Problem(path, "no_certificate_found", "not a regular file")
            if status.st_size > self.max_file_size:
                return Problem(path, "too_large", f"{status.st_size} bytes > {self.max_file_size}")
            # Ask for the size fstat gave, plus one to see a file that grew, not for
            # max_file_size: a 4 MiB buffer per file costs more than reading a certificate.
            wanted = status.st_size + 1
            with os.fdopen(fd, "rb", closefd=False) as stream:
                content = stream.read(wanted)
                if len(content) == wanted:  # it grew while we read: up to the cap, as before
                    content += stream.read(self.max_file_size + 1 - len(content))
            if (_identity(status), status.st_ctime_ns) != (_identity(checked), checked.st_ctime_ns):
                self.stat_record.distrust()
        except OSError as exc:
            return _problem_from_os_error(path, exc)
        finally:
            os.close(fd)
        if len(content) > self.max_file_size:
            return Problem(path, "too_large", f"more than {self.max_file_size} bytes")
        return content, _identity(status)

    def _parse_certificates(
        self, path: str, content: bytes
    ) -> tuple[tuple[CertificateFacts, ...], str] | Problem:
        """The file's facts and their payload for the cache."""
        parsed = parse_pem_or_der(path, content)
        if isinstance(parsed, Problem):
            return parsed
        self.parsed += 1
        facts: list[CertificateFacts] = []
        lines: list[str] = []
        for position, certificate in enumerate(parsed, start=1):
            try:  # cryptography parses lazily: describing is where a bad field shows
                described, line = self._described(certificate, chain=position > 1)
            except Exception as exc:  # one certificate's fault, never the pass's
                where = f"certificate {position}: " if len(parsed) > 1 else ""
                return bad_certificate(path, exc, where)
            facts.append(described)
            lines.append(line)
        self._judge_chain(path, parsed, facts)
        return tuple(facts), encode_facts(lines)

    def _judge_chain(
        self, path: str, parsed: Sequence[x509.Certificate], facts: Sequence[CertificateFacts]
    ) -> None:
        """The structure of a file verify.py will judge as a chain (the same rule)."""
        if self._judge is None or not facts or facts[0].is_ca:
            return
        if len(facts) > 1 or "fullchain" in os.path.basename(path):
            with contextlib.suppress(Exception):  # the checks read it again, and decide
                self.structures[path] = self._judge(parsed)

    def _described(
        self, certificate: x509.Certificate, *, chain: bool
    ) -> tuple[CertificateFacts, str]:
        """Its facts and payload line. The intermediate every bundle of a CA carries is
        described once per scan (one object, not one per bundle): a chain certificate's
        result is kept by its SHA-256 (of the whole DER)."""
        der = certificate.fingerprint(hashes.SHA256()) if chain else b""
        if chain and (known := self._chain_described.get(der)) is not None:
            return known
        described = self._facts(certificate)
        line = encode_one(described)  # the payload: also proves it can be stored
        line.encode("utf-8")  # a lone surrogate from odd bytes cannot be
        if chain:
            self._chain_described[der] = (described, line)
        return described, line

    def _facts(self, certificate: x509.Certificate) -> CertificateFacts:
        facts = describe(certificate)
        for signer, signer_fingerprint in zip(
            self._signers, self._signer_fingerprints, strict=True
        ):
            if facts.fingerprint != signer_fingerprint and verifies(certificate, signer):
                return replace(facts, signed_by=signer_fingerprint)
        return facts


def _problem_from_os_error(path: str, exc: OSError) -> Problem:
    if exc.errno == errno.ELOOP:
        return Problem(path, "broken_symlink", "symlink loop")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return Problem(path, "broken_symlink", f"points to missing {os.readlink(path)}")
        return Problem(path, "not_found")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Problem(path, "permission_denied")
    return Problem(path, "io_error", exc.strerror or str(exc))


def _identity(status: os.stat_result) -> Identity:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _parse_json(path: str, content: bytes) -> tuple[object, str] | Problem:
    try:
        return boundedjson.loads_and_dump(content)
    except ValueError as exc:
        return Problem(path, "bad_metadata", f"not JSON: {exc}")
