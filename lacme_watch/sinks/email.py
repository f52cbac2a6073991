"""The email sink: one digest message per pass, plain text and HTML, most urgent first.

SMTP with STARTTLS, implicit TLS or (on loopback) plain; optional login with the
password from `password_file` or a `${ENV}` reference. Each domain's expiry date and
days left are visible in both parts. A failure to send is a SinkError naming no
per-event outcome: every event of the digest was attempted in that one message, so all
of them are retried from the outbox together (never rejected), an SMTP outage never
loses a warning and never marks a good renewal as failed.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Self

from ..errors import ConfigError, SinkError
from ..events import CertificateChanged, CertificateExpiring, Change, Event
from ..events.cloudevents import Envelope, host_of
from ..options import Options

LOOPBACK = ("localhost", "127.0.0.1", "::1")
DEFAULT_SUBJECT = "[lacme-watch] {host}: {summary}"

SmtpFactory = Callable[[str, int, str, float, ssl.SSLContext], smtplib.SMTP]


def connect(
    host: str, port: int, security: str, timeout: float, context: ssl.SSLContext
) -> smtplib.SMTP:
    """An SMTP session, TLS set up as configured."""
    if security == "tls":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    session = smtplib.SMTP(host, port, timeout=timeout)
    if security == "starttls":
        session.starttls(context=context)
    return session


class EmailSink:
    """Sends one message per pass to `to`."""

    def __init__(
        self,
        name: str,
        *,
        sender: str,
        recipients: Sequence[str],
        host: str = "localhost",
        port: int = 25,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        subject: str = DEFAULT_SUBJECT,
        smtp: SmtpFactory = connect,
    ) -> None:
        self.name = name
        self.sender = sender
        self.recipients = tuple(recipients)
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.ca_file = ca_file
        self.timeout = timeout
        self.subject = subject
        self._smtp = smtp

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        smtp = options.section("smtp")
        host = smtp.string("host", "localhost")
        security = smtp.choice(
            "security", ("starttls", "tls", "none"), "none" if host in LOOPBACK else "starttls"
        )
        port = smtp.integer("port", 465 if security == "tls" else 25, minimum=1)
        username = smtp.optional_string("username")
        password = smtp.secret("password")
        if (username is None) != (password is None):
            raise ConfigError(str(smtp.where), "username and password go together")
        ca_file = smtp.path("ca_file") if smtp.node("ca_file") is not None else None
        timeout = smtp.duration("timeout", timedelta(seconds=30)).total_seconds()
        smtp.finish()
        subject = options.string("subject", DEFAULT_SUBJECT)
        try:
            subject.format_map(_subject_fields("h", 1, "s", "k"))
        except (KeyError, ValueError, IndexError) as exc:
            raise ConfigError(
                str(options.where.child("subject")),
                f"bad template ({exc}); placeholders: {{host}}, {{count}}, {{summary}}, {{kinds}}",
            ) from None
        recipients = options.strings("to")
        if not recipients:
            raise ConfigError(str(options.where.child("to")), "needs at least one address")
        return cls(
            name,
            sender=options.string("from"),
            recipients=recipients,
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            ca_file=ca_file,
            timeout=timeout,
            subject=subject,
        )

    def deliver(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        message = self.compose(events)
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with self._smtp(self.host, self.port, self.security, self.timeout, context) as session:
                if self.username and self.password:
                    session.login(self.username, self.password)
                session.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(self.name, f"{self.host}:{self.port}: {_describe(exc)}") from exc

    def compose(self, events: Sequence[Envelope]) -> EmailMessage:
        """The digest: one section per kind, most urgent kind and certificate first."""
        ordered = sorted(events, key=_urgency)
        host = host_of(ordered[0].source) or "lacme-watch"
        kinds = list(dict.fromkeys(e.event.kind for e in ordered))
        summary = (
            ordered[0].event.summary()
            if len(ordered) == 1
            else f"{len(ordered)} events: "
            + ", ".join(f"{sum(e.event.kind == k for e in ordered)} {k}" for k in kinds)
        )
        message = EmailMessage()
        subject = self.subject.format_map(
            _subject_fields(host, len(ordered), summary, " ".join(kinds))
        )
        message["Subject"] = " ".join(subject.split())[:250]  # no header injection by a SAN
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=_safe_domain(host))
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        sections = list(dict.fromkeys(e.event.section() for e in ordered))
        message.set_content(_text(host, ordered, sections))
        message.add_alternative(_html(host, ordered, sections), subtype="html")
        return message


def _subject_fields(host: str, count: int, summary: str, kinds: str) -> dict[str, object]:
    return {"host": host, "count": count, "summary": summary, "kinds": kinds}


Section = tuple[int, str]
"""(urgency, heading): usually a kind's; a renewal that dropped a name or EKU has its own."""


def _urgency(envelope: Envelope) -> tuple[int, str, str, int, str]:
    """Sections by their urgency (then heading and kind, for those that share one);
    certificates by days."""
    event = envelope.event
    days = event.days_remaining if isinstance(event, CertificateExpiring) else 0
    return (*event.section(), event.kind, days, event.subject)


def _changes(event: Event) -> tuple[Change, ...]:
    return event.changes if isinstance(event, CertificateChanged) else ()


def _text_table(changes: Sequence[Change]) -> list[str]:
    """certificate_changed's before/after table, aligned for a monospace font."""
    if not changes:
        return []
    rows = [("field", "before", "after")] + [
        (c.field, c.before_text, c.after_text) for c in changes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return [f"      {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows]


def _html_table(event: Event) -> str:
    changes = _changes(event)
    if not changes:
        return ""
    cell = 'style="padding:2px 8px;border:1px solid #ccc"'
    rows = "".join(
        f"<tr><td {cell}>{html.escape(c.field)}</td>"
        f"<td {cell}>{html.escape(c.before_text)}</td>"
        f"<td {cell}>{html.escape(c.after_text)}</td></tr>"
        for c in changes
    )
    head = f"<tr><th {cell}>field</th><th {cell}>before</th><th {cell}>after</th></tr>"
    return f'<table style="border-collapse:collapse;font-size:90%">{head}{rows}</table>'


def _text(host: str, events: Sequence[Envelope], sections: Sequence[Section]) -> str:
    lines = [f"lacme-watch on {host}: {len(events)} event(s)", ""]
    for section in sections:
        group = [e for e in events if e.event.section() == section]
        lines.append(f"{section[1]} ({len(group)})")
        for envelope in group:
            lines.append(f"  - {envelope.event.line()}")
            lines += _text_table(_changes(envelope.event))
        lines.append("")
    lines.append("Event ids, for `lacme-watch events`: " + " ".join(e.id for e in events))
    return "\n".join(lines) + "\n"


def _html(host: str, events: Sequence[Envelope], sections: Sequence[Section]) -> str:
    parts = [
        '<html><body style="font-family:sans-serif">',
        f"<p>lacme-watch on <b>{html.escape(host)}</b>: {len(events)} event(s)</p>",
    ]
    for section in sections:
        group = [e for e in events if e.event.section() == section]
        parts.append(f"<h3>{html.escape(section[1])} ({len(group)})</h3><ul>")
        parts += [f"<li>{html.escape(e.event.line())}{_html_table(e.event)}</li>" for e in group]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _safe_domain(host: str) -> str:
    cleaned = "".join(c for c in host if c.isalnum() or c in ".-")
    return cleaned or "lacme-watch.invalid"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else exc.smtp_error
        )
        return f"{exc.smtp_code} {detail}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(exc.recipients)
    return str(exc) or type(exc).__name__
