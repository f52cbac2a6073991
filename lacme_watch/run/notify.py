"""The systemd notify protocol: a few datagrams to $NOTIFY_SOCKET (sd_notify(3)).

READY=1 after the first pass, STATUS= with each pass's summary, WATCHDOG=1 while
alive, STOPPING=1 on the way out. Without $NOTIFY_SOCKET every call is a no-op.
A send never blocks: a datagram socket whose reader lags (a queue of 10 by default)
would otherwise wedge the daemon; a message that does not fit is dropped and logged.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages, if systemd asked for them."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' (sd_notify(3)).
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        self.watchdog: timedelta | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = timedelta(microseconds=int(usec))

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """notify(ready="1", status="...") sends READY=1 and STATUS=... in one datagram."""
        if not self._address:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.send(message.encode(), socket.MSG_DONTWAIT)
        except BlockingIOError:
            log.info("systemd's notify queue is full; dropped %s", message.replace("\n", " "))
        except OSError as exc:  # systemd gone or socket wrong: log, never crash the daemon
            log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
