"""The webhook sink: CloudEvents over HTTP (the CloudEvents HTTP protocol binding 1.0).

`mode: structured` POSTs each event as `application/cloudevents+json`; `mode: binary`
puts the attributes in `ce-*` headers and the data in the body; `batch: true` POSTs
one `application/cloudevents-batch+json` array per pass. 2xx is success; 429, 5xx and
the auth failures 401/403 are retried (honouring Retry-After) until `retry.max_age`,
so events reach the receiver once its token is fixed; any other 4xx means the receiver
will never take that event, so it alone is rejected and reported. Per-event mode goes
on with the other events after a refusal or a 5xx, and stops at a 429 or a connection
failure (the rest wait, untried). Errors name the URL without userinfo or query string.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigError, SinkError
from ..events.cloudevents import Envelope, to_cloudevent
from ..options import Options, expand_env

USER_AGENT = "lacme-watch"


class WebhookSink:
    """POSTs events to `url` as CloudEvents."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        mode: str = "structured",
        batch: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: timedelta = timedelta(seconds=10),
        verify: bool = True,
        ca_file: str | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.mode = mode
        self.batch = batch
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file)
        if not verify:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        node = options.node("url")
        url = expand_env(options.string("url"), node)
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigError(
                str(node.where if node else options.where),
                f"not an http(s) URL: {redact(url)!r}",
            )
        mode = options.choice("mode", ("structured", "binary"), "structured")
        batch = options.boolean("batch", False)
        if batch and mode == "binary":
            raise ConfigError(
                str(options.where.child("batch")), "batches exist in structured mode only"
            )
        return cls(
            name,
            url,
            mode=mode,
            batch=batch,
            headers=options.string_map("headers"),
            timeout=options.duration("timeout", timedelta(seconds=10)),
            verify=options.boolean("verify", True),
            ca_file=options.path("ca_file") if options.node("ca_file") is not None else None,
        )

    def deliver(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        if self.batch:
            body = json.dumps([to_cloudevent(e) for e in events]).encode()
            self._post(body, {"Content-Type": "application/cloudevents-batch+json"})
            return
        delivered: list[str] = []
        rejected: dict[str, str] = {}
        failed: list[str] = []
        last: SinkError | None = None
        for envelope in events:
            body, headers = self._single(envelope)
            try:
                self._post(body, headers)
            except _Stop as stop:  # the receiver is unreachable or asks us to slow down
                failed.append(envelope.id)
                last = stop
                break
            except SinkError as exc:
                last = exc
                if exc.permanent:
                    rejected[envelope.id] = exc.reason
                else:
                    failed.append(envelope.id)
            else:
                delivered.append(envelope.id)
        if last is not None:
            raise SinkError(
                self.name,
                last.reason,
                delivered=delivered,
                rejected=rejected,
                failed=failed,
                retry_after=last.retry_after,
            )

    def _single(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        document = to_cloudevent(envelope)
        if self.mode == "structured":
            return json.dumps(document).encode(), {"Content-Type": "application/cloudevents+json"}
        data = document.pop("data")
        headers = {"Content-Type": str(document.pop("datacontenttype"))}
        headers |= {f"ce-{key}": _header_value(str(value)) for key, value in document.items()}
        return json.dumps(data).encode(), headers

    def _post(self, body: bytes, headers: Mapping[str, str]) -> None:
        request = urllib.request.Request(  # noqa: S310  # from_options allows http(s) only
            self.url,
            data=body,
            method="POST",
            headers={"User-Agent": USER_AGENT, **self.headers, **headers},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310  # the scheme is checked to be http(s)
                request, timeout=self.timeout.total_seconds(), context=self._context
            ) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise self._refused(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Stop(self.name, f"{redact(self.url)}: {reason}") from exc

    def _refused(self, exc: urllib.error.HTTPError) -> SinkError:
        status = exc.code
        detail = exc.read(300).decode(errors="replace").strip()
        reason = f"{redact(self.url)} answered {status} {exc.reason}" + (
            f": {detail}" if detail else ""
        )
        retry_after = _retry_after(exc.headers.get("Retry-After"))
        if status == 429:
            return _Stop(self.name, reason, retry_after=retry_after)
        if status >= 500 or status in (401, 403):
            return SinkError(self.name, reason, retry_after=retry_after)
        return SinkError(self.name, reason, permanent=True)


class _Stop(SinkError):
    """Stop this batch here: the receiver cannot be reached or asks for a pause."""


def redact(url: str) -> str:
    """The URL for messages: no userinfo (a password) and no query string (a token)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _retry_after(value: str | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - datetime.now(UTC))


def _header_value(value: str) -> str:
    """Percent-encode as the CloudEvents HTTP binding says (3.1.3.2): space, `"`, `%` and
    anything outside printable ASCII; so no header can be split by an event's content."""
    return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%'))
