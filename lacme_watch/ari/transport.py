"""The real Fetch: urllib GETs with a timeout, a capped body and same-origin redirects.

Apart from client.py so that a pass which asks no CA anything (most cron passes) does
not import urllib, ssl and importlib.metadata, nor load the system roots.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import IO
from urllib.parse import urlsplit

from .client import MAX_BODY, UNTRUSTED, Fetch, FetchError, Response, origin
from .window import parse_retry_after


def _user_agent() -> str:
    """The installed version (this module sits below the package's __init__)."""
    try:
        return f"lacme-watch/{version('lacme-watch')} (RFC 9773 renewal information)"
    except PackageNotFoundError:  # pragma: no cover - a source checkout run uninstalled
        return "lacme-watch (RFC 9773 renewal information)"


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
