"""The whole chain a TLS server sends, on every supported Python.

The standard `ssl` module gives only the leaf before Python 3.13
(`SSLSocket.get_unverified_chain()` arrived in 3.13). Parsing the handshake by hand
is no option: TLS 1.3 encrypts the Certificate message, so reading it means being a
TLS client. pyOpenSSL (maintained by PyCA beside `cryptography`) wraps the same
OpenSSL that `ssl` uses and exposes `get_peer_cert_chain()`, so one code path serves
3.11 to 3.13+. Verification is off on purpose: a broken chain is what we report.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL


def served_chain(host: str, port: int, server_name: str | None, timeout: float) -> list[bytes]:
    """The certificates (DER, in the order sent) the server presents for `server_name`."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE)  # read what is served, valid or not
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.setblocking(False)
        connection = SSL.Connection(context, raw)
        if server_name:
            connection.set_tlsext_host_name(server_name.encode("idna"))
        connection.set_connect_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                _wait(raw, deadline, read=True)
            except SSL.WantWriteError:
                _wait(raw, deadline, read=False)
            except SSL.Error as exc:
                raise OSError(f"TLS handshake failed: {_describe(exc)}") from exc
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        with contextlib.suppress(SSL.Error):  # the chain is read; how it hangs up is no matter
            connection.shutdown()
    if not chain:
        raise ValueError("the server sent no certificate")
    return [certificate.public_bytes(Encoding.DER) for certificate in chain]


def _wait(sock: socket.socket, deadline: float, *, read: bool) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("TLS handshake timed out")
    ready = select.select([sock] if read else [], [] if read else [sock], [], remaining)
    if not any(ready):
        raise TimeoutError("TLS handshake timed out")


def _describe(exc: SSL.Error) -> str:
    details = [part for entry in exc.args for part in (entry if isinstance(entry, list) else [])]
    return str(details[-1][-1]) if details and isinstance(details[-1], tuple) else str(exc)
