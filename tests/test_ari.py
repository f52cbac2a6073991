"""ACME Renewal Information (RFC 9773): the certID, answers, the decision, and passes
against a real renewalInfo server on loopback (tests/ari_server.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509

from lacme_watch.ari.certid import cert_id, make_cert_id, serial_der_bytes
from lacme_watch.ari.client import FetchError, Response, renewal_info_url
from lacme_watch.ari.window import (
    AriRecord,
    BadAnswer,
    Moved,
    Overdue,
    RenewalWindow,
    judge,
    next_check,
    parse_answer,
    parse_retry_after,
)
from lacme_watch.observations import CertificateFacts, Observation

from .ari_server import server_cert_id

# RFC 9773 Appendix A: the example certificate of §4.1 (AKI 69:88:5B:..., serial 0x87654321).
RFC_9773_CERTIFICATE = b"""-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
"""
RFC_9773_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


# -- the certificate identifier ---------------------------------------------------------


def test_cert_id_of_the_rfc_9773_example_certificate() -> None:
    certificate = x509.load_pem_x509_certificate(RFC_9773_CERTIFICATE)

    assert cert_id(certificate) == RFC_9773_CERT_ID


def test_cert_id_from_the_rfc_9773_key_identifier_and_serial() -> None:
    key_identifier = bytes.fromhex("69885b6b87464041e1b37b847ba0ae2cde01c8d4")

    assert make_cert_id(key_identifier, 0x87654321) == RFC_9773_CERT_ID


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        pytest.param(0x87654321, bytes.fromhex("0087654321"), id="high-bit-gets-a-zero"),
        pytest.param(0x7F, b"\x7f", id="no-zero-without-the-high-bit"),
        pytest.param(0x80, b"\x00\x80", id="one-byte-high-bit"),
        pytest.param(0, b"\x00", id="zero"),
    ],
)
def test_serial_der_bytes_are_minimal_twos_complement(serial: int, expected: bytes) -> None:
    assert serial_der_bytes(serial) == expected


def test_cert_id_agrees_with_the_certificates_own_encoding_of_its_serial() -> None:
    ca = trustme.CA()
    for index in range(40):  # random serials: about half need the leading zero
        leaf = ca.issue_cert(f"n{index}.example")
        certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        assert cert_id(certificate) == server_cert_id(certificate)


def test_a_certificate_without_authority_key_identifier_has_no_cert_id() -> None:
    ca = trustme.CA()
    root = x509.load_pem_x509_certificate(ca.cert_pem.bytes())  # self-signed, SKI only

    assert cert_id(root) is None


# -- answers -------------------------------------------------------------------------------


def test_an_answer_gives_the_window_and_explanation() -> None:
    window = parse_answer(
        b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-03T00:00:00Z"},'
        b' "explanationURL": "https://ca.example/incident"}'
    )

    assert window == RenewalWindow(
        start=datetime(2026, 12, 1, tzinfo=UTC),
        end=datetime(2026, 12, 3, tzinfo=UTC),
        explanation_url="https://ca.example/incident",
    )


def test_window_timestamps_in_any_rfc_3339_form_are_kept_to_the_second() -> None:
    window = parse_answer(
        b'{"suggestedWindow": {"start": "2026-12-01t00:00:00.123456789z",'
        b' "end": "2026-12-03T02:00:00+02:00"}}'
    )

    assert (window.start, window.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>", id="not-json"),
        pytest.param(b"{}", id="no-window"),
        pytest.param(b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z"}}', id="no-end"),
        pytest.param(
            b'{"suggestedWindow": {"start": "2026-12-03T00:00:00Z",'
            b' "end": "2026-12-01T00:00:00Z"}}',
            id="ends-before-it-starts",
        ),
        pytest.param(
            b'{"suggestedWindow": {"start": "soon", "end": "later"}}', id="not-timestamps"
        ),
    ],
)
def test_a_bad_answer_counts_as_no_answer(body: bytes) -> None:
    with pytest.raises(BadAnswer):
        parse_answer(body)


def test_a_hostile_answer_nested_past_any_limit_is_no_answer_not_a_crash() -> None:
    # 60,000 levels: plain json.loads raises RecursionError, which nobody caught.
    with pytest.raises(BadAnswer, match="nested deeper"):
        parse_answer(b"[" * 60_000)


def test_a_hostile_directory_nested_past_any_limit_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="not an ACME directory"):
        renewal_info_url("http://127.0.0.1:1/dir", Response(status=200, body=b"[" * 60_000))


def test_retry_after_as_seconds_or_http_date_and_clamped() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)

    assert parse_retry_after("3600") == timedelta(hours=1)
    assert parse_retry_after(
        "Tue, 01 Dec 2026 02:00:00 GMT", "Tue, 01 Dec 2026 00:00:00 GMT"
    ) == timedelta(hours=2)
    assert next_check(now, timedelta(seconds=5), timedelta(hours=12)) == now + timedelta(minutes=1)
    assert next_check(now, timedelta(days=9), timedelta(hours=12)) == now + timedelta(days=1)
    assert next_check(now, None, timedelta(hours=12)) == now + timedelta(hours=12)


# -- the decision (pure) -----------------------------------------------------------------

ISSUED = datetime(2026, 11, 1, tzinfo=UTC)


def _observation(lifetime: timedelta = timedelta(days=90)) -> Observation:
    facts = CertificateFacts(
        fingerprint="ab" * 32,
        serial="01",
        subject="CN=www.example.com",
        subject_cn="www.example.com",
        issuer="CN=Example CA",
        issuer_cn="Example CA",
        names=("www.example.com",),
        not_before=ISSUED,
        not_after=ISSUED + lifetime,
        is_ca=False,
        is_client=False,
    )
    return Observation(
        lineage="www.example.com",
        role="leaf",
        path="/x",
        domain="www.example.com",
        domains=("www.example.com",),
        certificate=facts,
    )


def _record(window: RenewalWindow | None) -> AriRecord:
    return AriRecord(
        fingerprint="ab" * 32,
        cert_id="a.b",
        directory="https://ca.example/dir",
        next_check=ISSUED,
        window=window,
    )


def _window(start_day: float, end_day: float) -> RenewalWindow:
    return RenewalWindow(
        start=ISSUED + timedelta(days=start_day), end=ISSUED + timedelta(days=end_day)
    )


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, _window(59, 61), [], id="lets-encrypt-usual-window"),
        pytest.param(None, _window(59.5, 60.5), [], id="boulder-1-percent-window"),
        pytest.param(None, _window(10, 11), ["early"], id="first-answer-early"),
        pytest.param(_window(59, 61), _window(59, 61), [], id="unchanged"),
        pytest.param(_window(59, 61), _window(58, 61), ["moved"], id="moved-earlier"),
        pytest.param(_window(59, 61), _window(62, 64), [], id="moved-later-is-no-alarm"),
    ],
)
def test_window_moved(
    before: RenewalWindow | None, after: RenewalWindow, expected: list[str]
) -> None:
    observation = _observation()
    previous = None if before is None else _record(before)
    current = _record(after)
    now = ISSUED + timedelta(days=5)

    _, findings = judge(observation, previous, current, now, answered=True)

    assert [f.reason for f in findings if isinstance(f, Moved)] == expected


def test_an_early_window_is_announced_once_then_re_armed_by_a_new_window() -> None:
    observation = _observation()
    now = ISSUED + timedelta(days=5)
    first, found = judge(observation, None, _record(_window(10, 11)), now, answered=True)
    again, repeat = judge(observation, first, first, now, answered=True)
    newer = replace(again, window=_window(6, 7))
    _, moved = judge(observation, again, newer, now, answered=True)

    assert [type(f) for f in found] == [Moved]
    assert repeat == []
    assert [(f.reason, f.previous) for f in moved if isinstance(f, Moved)] == [
        ("moved", _window(10, 11))
    ]


def test_a_six_day_certificate_is_usual_at_half_its_lifetime() -> None:
    observation = _observation(timedelta(days=6))
    window = _window(2.94, 3.06)  # Boulder: one half, 1% either side

    _, findings = judge(observation, None, _record(window), ISSUED, answered=True)

    assert findings == []


def test_overdue_once_the_window_end_plus_grace_passed() -> None:
    observation = _observation()
    record = _record(_window(59, 61))

    _, within = judge(observation, None, record, ISSUED + timedelta(days=61.5), answered=False)
    marked, late = judge(observation, None, record, ISSUED + timedelta(days=62.1), answered=False)
    _, again = judge(observation, marked, marked, ISSUED + timedelta(days=63), answered=False)

    assert within == []
    assert [type(f) for f in late] == [Overdue]
    assert again == []
