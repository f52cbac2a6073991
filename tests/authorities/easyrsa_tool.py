"""Running the real easy-rsa 3 (Debian's /usr/share/easy-rsa/easyrsa) in a scratch PKI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

EASYRSA = "/usr/share/easy-rsa/easyrsa"


def easyrsa(pki: Path, *arguments: str, **env: str) -> None:
    assert os.access(EASYRSA, os.X_OK), "easy-rsa is not installed: .ci/run installs it"
    done = subprocess.run(
        [EASYRSA, *arguments],
        env={**os.environ, "EASYRSA_PKI": str(pki), "EASYRSA_BATCH": "1", **env},
        capture_output=True,
        text=True,
        cwd=pki.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
