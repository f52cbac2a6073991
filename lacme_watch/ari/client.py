"""HTTP to the CA: the ACME directory and `GET {renewalInfo}/{certID}` (RFC 9773 §4.1).

Unauthenticated GETs, a timeout on every request and on the whole exchange, bodies
capped, and redirects followed only within the directory's own origin: a certificate's
identifier goes to the CA it came from and nowhere else.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import IO
from urllib.parse import urlsplit

from .window import Answer, BadAnswer, parse_answer, parse_retry_after

MAX_BODY = 64 * 1024
UNTRUSTED = "untrusted"
"""A CA whose TLS certificate lacme-watch cannot verify (a private ACME CA that only its
client trusts, Debian's pebble): nothing is asked, and the pass does not fail for it."""


def _user_agent() -> str:
    """The installed version (this module sits below the package's __init__)."""
    try:
        return f"lacme-watch/{version('lacme-watch')} (RFC 9773 renewal information)"
    except PackageNotFoundError:  # pragma: no cover - a source checkout run uninstalled
        return "lacme-watch (RFC 9773 renewal information)"


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
"""GET one URL; raises FetchError. The one seam tests could replace (ours use real HTTP)."""


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the origin the request went to."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            raise FetchError(f"redirected to another host ({newurl})", kind="bad_response")
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]  # typeshed wants Message


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system trust store, or a CA bundle: the configured one, else the variables
    certbot (REQUESTS_CA_BUNDLE) and dehydrated (CURL_CA_BUNDLE) honour."""
    bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle or None)


def http_fetcher(timeout: timedelta, ca_bundle: str | None = None) -> Fetch:
    """GETs with urllib: `timeout` per socket operation and for the whole exchange."""
    context = ssl_context(ca_bundle)
    agent = _user_agent()
    opener = urllib.request.build_opener(
        _SameOrigin(), urllib.request.HTTPSHandler(context=context)
    )
    seconds = timeout.total_seconds()

    def fetch(url: str) -> Response:
        if urlsplit(url).scheme not in ("http", "https"):
            raise FetchError(f"not an http(s) URL: {url}", kind="bad_response")
        request = urllib.request.Request(  # noqa: S310  # the scheme is checked just above
            url, headers={"User-Agent": agent, "Accept": "application/json"}
        )
        deadline = time.monotonic() + seconds
        try:
            with opener.open(request, timeout=seconds) as answer:
                body = _read_capped(answer, deadline)
                return Response(status=answer.status, body=body, headers=dict(answer.headers))
        except urllib.error.HTTPError as exc:
            retry = parse_retry_after(exc.headers.get("Retry-After"), exc.headers.get("Date"))
            raise FetchError(
                f"HTTP {exc.code} from {url}", retry_after=retry, kind="bad_response"
            ) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise FetchError(
                    f"cannot verify the TLS certificate of {url} ({reason.verify_message});"
                    " give ari.ca_bundle (or $REQUESTS_CA_BUNDLE) to trust its CA",
                    kind=UNTRUSTED,
                ) from None
            if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
                reason = f"timed out after {seconds:g}s"
            raise FetchError(f"cannot reach {url}: {reason}", kind="unreachable") from None

    return fetch


def _read_capped(answer: IO[bytes], deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := answer.read(8192):
        size += len(chunk)
        if size > MAX_BODY:
            raise FetchError(f"answer larger than {MAX_BODY} bytes", kind="bad_response")
        if time.monotonic() > deadline:
            raise FetchError("answer too slow", kind="unreachable")
        chunks.append(chunk)
    return b"".join(chunks)


def renewal_info_url(directory: str, response: Response) -> str | None:
    """The directory's `renewalInfo` URL (RFC 9773 §3), None when it has none.

    A renewalInfo on another host than the directory is refused: requests go only to
    the CA the certificate came from.
    """
    try:
        document = json.loads(response.body)
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
