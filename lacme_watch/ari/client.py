"""HTTP to the CA: the ACME directory and `GET {renewalInfo}/{certID}` (RFC 9773 §4.1).

Unauthenticated GETs, a timeout on every request and on the whole exchange, bodies
capped, and redirects followed only within the directory's own origin: a certificate's
identifier goes to the CA it came from and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from .. import boundedjson
from .window import Answer, BadAnswer, parse_answer, parse_retry_after

MAX_BODY = 64 * 1024
UNTRUSTED = "untrusted"
"""A CA whose TLS certificate lacme-watch cannot verify (a private ACME CA that only its
client trusts, Debian's pebble): nothing is asked, and the pass does not fail for it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class FetchError(Exception):
    """The CA could not be asked, or answered with an error: a source problem."""

    def __init__(self, reason: str, *, retry_after: timedelta | None = None, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.kind = kind
        """`unreachable` (connection, timeout), `bad_response` (HTTP error, bad body) or
        `untrusted` (its TLS certificate cannot be verified here)."""


Fetch = Callable[[str], Response]
"""GET one URL; raises FetchError. The one seam tests could replace (ours use real HTTP);
transport.http_fetcher is the real one."""


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def renewal_info_url(directory: str, response: Response) -> str | None:
    """The directory's `renewalInfo` URL (RFC 9773 §3), None when it has none.

    A renewalInfo on another host than the directory is refused: requests go only to
    the CA the certificate came from.
    """
    try:
        document = boundedjson.loads(response.body)
    except (UnicodeDecodeError, ValueError):
        raise FetchError(
            f"{directory} is not an ACME directory (not JSON)", kind="bad_response"
        ) from None
    if not isinstance(document, dict):
        raise FetchError(f"{directory} is not an ACME directory", kind="bad_response")
    url = document.get("renewalInfo")
    if url is None:
        return None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"{directory}: renewalInfo is not a URL: {url!r}", kind="bad_response")
    if origin(url)[1:] != origin(directory)[1:]:
        raise FetchError(
            f"{directory}: renewalInfo {url} is on another host; not asked",
            kind="bad_response",
        )
    return url


def ask(fetch: Fetch, renewal_info: str, cert_id: str) -> Answer:
    """`GET {renewalInfo}/{certID}`: the window and the Retry-After."""
    url = f"{renewal_info.rstrip('/')}/{cert_id}"
    response = fetch(url)
    try:
        window = parse_answer(response.body)
    except BadAnswer as exc:
        raise FetchError(f"{url}: {exc}", kind="bad_response") from None
    headers = {name.lower(): value for name, value in response.headers.items()}
    retry = parse_retry_after(headers.get("retry-after"), headers.get("date"))
    return Answer(window=window, retry_after=retry)
