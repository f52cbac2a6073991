"""Certificate revocation lists: read a CRL file, fetch a certificate's CRL, verify it.

Let's Encrypt stopped OCSP in August 2025; a revocation is now visible only in the
CRL each certificate names in its CRL distribution points (Let's Encrypt shards its
CRLs, so each certificate's own URL is followed). Fetches are conditional GETs
(ETag / If-Modified-Since remembered in the state database), so an unchanged CRL
costs a 304; capped in size and time; made at most once a pass, or at most every
`refresh` when one is set (and always once the cached CRL's nextUpdate has passed);
only to URLs a certificate names. A CRL is believed only when its issuer's key
verifies its signature; one that cannot be fetched or verified is a problem of the
source, never a revocation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from ..observations import CrlSeen, Problem

if TYPE_CHECKING:  # urllib and http.client cost a cron run ~15 ms: imported when fetching
    import http.client
    import urllib.request

    # cryptography.x509 is imported where a CRL is read: config.model and a rescan that
    # only stats load this module (RevocationOptions) and never read one (~25 ms)
    from cryptography import x509

    from ..reading.reader import CertificateReader

DEFAULT_MAX_CRL_SIZE = 16 * 1024 * 1024
"""Let's Encrypt's shards are a few hundred kB; a CA's whole CRL can reach megabytes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationOptions:
    """`revocation:` globally; stores may switch `crl` on or off for themselves."""

    crl: bool = False
    timeout: timedelta = timedelta(seconds=10)
    max_size: int = DEFAULT_MAX_CRL_SIZE
    refresh: timedelta = timedelta(0)
    """The shortest time between two requests for one URL; 0 (unset) asks every pass. A CRL's
    nextUpdate passing always makes the next pass ask again. CAs publish new CRLs
    long before nextUpdate (Let's Encrypt's run days ahead), so waiting for it would
    see a revocation days late."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedCrl:
    """The last CRL fetched from one URL, and what makes the next request conditional."""

    url: str
    body: bytes
    fetched_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    next_update: datetime | None = None


class CrlCache(Protocol):
    """Where fetched CRLs are kept between passes (the state database)."""

    def load_crl(self, url: str) -> CachedCrl | None: ...

    def save_crl(self, cached: CachedCrl) -> None: ...


class MemoryCrlCache:
    """A CrlCache for one process (tests, `status` without a database)."""

    def __init__(self) -> None:
        self.saved: dict[str, CachedCrl] = {}

    def load_crl(self, url: str) -> CachedCrl | None:
        return self.saved.get(url)

    def save_crl(self, cached: CachedCrl) -> None:
        self.saved[cached.url] = cached


Opener = Callable[["urllib.request.Request", float], "http.client.HTTPResponse"]
"""The one network seam: urllib's urlopen unless a test hands in another."""


def parse_crl(content: bytes) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER; ValueError when it is neither."""
    from cryptography import x509

    if b"-----BEGIN" in content:
        return x509.load_pem_x509_crl(content)
    return x509.load_der_x509_crl(content)


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    from cryptography import x509

    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def describe_crl(
    path: str, content: bytes, *, lineage: str, role: Literal["current", "deployed"] = "current"
) -> CrlSeen | Problem:
    """What lacme-watch keeps about a CRL file."""
    # serialization (with its SSH and cipher modules) only once a CRL is read
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    try:
        crl = parse_crl(content)
    except ValueError as exc:
        return Problem(path, "bad_crl", f"not a CRL: {exc}")
    cn = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CrlSeen(
        lineage=lineage,
        path=path,
        fingerprint=hashlib.sha256(crl.public_bytes(Encoding.DER)).hexdigest(),
        issuer=crl.issuer.rfc4514_string(),
        issuer_cn=str(cn[0].value) if cn else None,
        number=crl_number(crl),
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        role=role,
    )


def distribution_points(certificate: x509.Certificate) -> tuple[str, ...]:
    """The http(s) CRL URLs a certificate names (LDAP and others are not followed)."""
    from cryptography import x509

    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except (x509.ExtensionNotFound, ValueError):
        return ()
    urls = []
    for point in points.value:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return tuple(urls)


def verifies(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """The CRL names `issuer` and `issuer`'s key verifies its signature."""
    if crl.issuer != issuer.subject:
        return False
    try:
        # A key type that cannot sign (X25519, DH) fails here as it should.
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """A certificate's serial listed on a verified CRL."""

    reason: str
    revoked_at: datetime
    url: str


class CrlFetcher:
    """Fetches, caches and verifies CRLs for one pass; each URL at most once per pass."""

    def __init__(
        self,
        options: RevocationOptions,
        cache: CrlCache,
        now: datetime,
        opener: Opener | None = None,
    ) -> None:
        self.options = options
        self._cache = cache
        self._now = now
        self._open = opener or _urlopen
        self._this_pass: dict[str, x509.CertificateRevocationList | Problem] = {}
        self._verified: dict[tuple[str, x509.Certificate], bool] = {}
        """Each URL's CRL against each issuer, checked once a pass, not once a certificate."""
        self.requests = 0

    def check(
        self, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> Revocation | Problem | None:
        """Whether `issuer`'s CRL lists `certificate`; None when it does not, or names no CRL."""
        for url in distribution_points(certificate):
            crl = self.crl(url)
            if isinstance(crl, Problem):
                return crl
            key = (url, issuer)
            if key not in self._verified:
                self._verified[key] = verifies(crl, issuer)
            if not self._verified[key]:
                return Problem(
                    url, "crl_unverified", "its signature does not verify against the issuer"
                )
            entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if entry is not None:
                return Revocation(
                    reason=_reason(entry), revoked_at=entry.revocation_date_utc, url=url
                )
        return None

    def crl(self, url: str) -> x509.CertificateRevocationList | Problem:
        if url not in self._this_pass:
            self._this_pass[url] = self._fetch(url)
        return self._this_pass[url]

    def _fetch(self, url: str) -> x509.CertificateRevocationList | Problem:
        cached = self._cache.load_crl(url)
        if cached is not None and not self._due(cached):
            return _parsed(url, cached.body)
        headers = {"User-Agent": "lacme-watch"}
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        if cached is not None and cached.last_modified:
            headers["If-Modified-Since"] = cached.last_modified
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, headers=headers)  # noqa: S310  # http(s) only
        self.requests += 1
        try:
            response = self._open(request, self.options.timeout.total_seconds())
            body, etag, modified = _read(response, self.options.max_size)
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and cached is not None:
                self._cache.save_crl(replace(cached, fetched_at=self._now))
                return _parsed(url, cached.body)
            return Problem(url, "crl_unavailable", f"HTTP {exc.code}")
        except _TooLarge:
            return Problem(url, "crl_unavailable", f"larger than {self.options.max_size} bytes")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return Problem(url, "crl_unavailable", str(reason) or type(exc).__name__)
        crl = _parsed(url, body)
        if not isinstance(crl, Problem):
            self._cache.save_crl(
                CachedCrl(
                    url=url,
                    body=body,
                    fetched_at=self._now,
                    etag=etag,
                    last_modified=modified,
                    next_update=crl.next_update_utc,
                )
            )
        return crl

    def _due(self, cached: CachedCrl) -> bool:
        if self._now >= cached.fetched_at + self.options.refresh:
            return True
        return cached.next_update is not None and self._now >= cached.next_update


class _TooLarge(Exception):
    pass


def _urlopen(request: urllib.request.Request, timeout: float) -> http.client.HTTPResponse:
    import urllib.request

    response: http.client.HTTPResponse = urllib.request.urlopen(  # noqa: S310  # http(s) only
        request, timeout=timeout
    )
    return response


def _read(response: http.client.HTTPResponse, limit: int) -> tuple[bytes, str | None, str | None]:
    with response as stream:
        body = stream.read(limit + 1)
        headers = stream.headers
    if len(body) > limit:
        raise _TooLarge
    return body, headers.get("ETag"), headers.get("Last-Modified")


def _parsed(url: str, body: bytes) -> x509.CertificateRevocationList | Problem:
    try:
        return parse_crl(body)
    except ValueError as exc:
        return Problem(url, "bad_crl", f"not a CRL: {exc}")


def _reason(entry: x509.RevokedCertificate) -> str:
    from cryptography import x509

    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        return "unspecified"
    return str(flag.value)


def read_crl_file(
    reader: CertificateReader, path: str, role: Literal["current", "deployed"] = "current"
) -> CrlSeen | Problem:
    """One CRL file through the hostile-file reader; its lineage is `crl:<path>`."""
    content = reader.read_bytes(path)
    if isinstance(content, Problem):
        return content
    return describe_crl(path, content, lineage=f"crl:{path}", role=role)
