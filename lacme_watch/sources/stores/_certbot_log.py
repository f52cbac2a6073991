"""Challenge failures in certbot's letsencrypt.log (the DEBUG log certbot always writes).

The structured source is the authorization object certbot logs at DEBUG
(`acme.client:Received response:` + JSON): its invalid challenges carry the ACME
error type and detail. The human report block (`Domain: / Type: / Detail:`) is the
fallback for domains whose JSON is missing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ... import boundedjson
from ...events import ChallengeFailed

RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}):([A-Z]+):([\w.]+):(.*)$")
_REPORT = re.compile(
    r"^\s+Domain: (?P<domain>\S+)\n\s+Type:\s+(?P<type>.*)\n\s+Detail: (?P<detail>.*)$",
    re.MULTILINE,
)
_CHALLENGE_FOR = re.compile(r"^(\S+-\d+) challenge for (\S+)$")
ERROR_PREFIX = "urn:ietf:params:acme:error:"


def is_record_start(line: str) -> bool:
    return RECORD.match(line) is not None


def _records(text: str) -> list[tuple[datetime, str, str, str]]:
    """(time, level, logger, message with its continuation lines)."""
    found: list[tuple[datetime, str, str, str]] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            # certbot logs local time without an offset
            found.append((when.astimezone(UTC), match.group(2), match.group(3), match.group(4)))
        elif found:
            when, level, logger, message = found[-1]
            found[-1] = (when, level, logger, message + "\n" + line)
    return found


def runs(text: str) -> list[datetime]:
    """When certbot started, once per run: it logs its version first thing on every run
    (also when nothing is due), so a gap means the timer or cron job stopped."""
    return [when for when, _level, _logger, message in _records(text) if _is_header(message)]


def _is_header(message: str) -> bool:
    return message.startswith("certbot version:")


def challenge_failures(text: str, *, store: str, path: str) -> list[ChallengeFailed]:
    """Every failed challenge in the text, once, with the ACME error when logged."""
    failures: list[ChallengeFailed] = []
    seen: set[tuple[str, str]] = set()
    structured: set[str] = set()
    types: dict[str, str] = {}
    for when, _level, logger, message in _records(text):
        if _is_header(message):
            structured.clear()  # a new run
            types.clear()
        if logger == "acme.client" and message.startswith("Received response:"):
            for domain, challenge_type, error, url in _invalid_challenges(message):
                if (domain, url) in seen:
                    continue
                seen.add((domain, url))
                structured.add(domain)
                failures.append(
                    ChallengeFailed(
                        domain=domain,
                        challenge_type=challenge_type,
                        error=error,
                        occurred_at=when,
                        store=store,
                        path=path,
                    )
                )
        elif match := _CHALLENGE_FOR.match(message):
            types[match.group(2)] = match.group(1)
        elif "The Certificate Authority reported these problems" in message:
            for report in _REPORT.finditer(message):
                domain = report.group("domain")
                if domain in structured:
                    continue
                error = f"{report.group('type').strip()}: {report.group('detail').strip()}"
                failures.append(
                    ChallengeFailed(
                        domain=domain,
                        challenge_type=types.get(domain, "unknown"),
                        error=error,
                        occurred_at=when,
                        store=store,
                        path=path,
                    )
                )
    return failures


def _invalid_challenges(message: str) -> list[tuple[str, str, str, str]]:
    """(domain, challenge type, "type: detail", url) from an invalid authorization body."""
    start = message.find("\n{")
    if start == -1:
        return []
    try:
        body = boundedjson.loads(message[start:])
    except ValueError:
        return []
    if not isinstance(body, dict) or body.get("status") != "invalid":
        return []
    identifier = body.get("identifier")
    challenges = body.get("challenges")
    if not isinstance(identifier, dict) or not isinstance(challenges, list):
        return []
    domain = str(identifier.get("value", ""))
    found = []
    for challenge in challenges:
        if not isinstance(challenge, dict) or challenge.get("status") != "invalid":
            continue
        raw_error = challenge.get("error")
        error: dict[str, object] = raw_error if isinstance(raw_error, dict) else {}
        kind = str(error.get("type", "")).removeprefix(ERROR_PREFIX) or "unknown"
        detail = str(error.get("detail", "")).strip()
        found.append(
            (
                domain,
                str(challenge.get("type", "unknown")),
                f"{kind}: {detail}",
                str(challenge.get("url", "")),
            )
        )
    return found
