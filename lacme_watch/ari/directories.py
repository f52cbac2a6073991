"""Which ACME directory a certificate came from, read from its client's own files.

- certbot: `server = ...` in `renewal/<lineage>.conf` (the directory it renews against).
- dehydrated: the `CA` setting of its config (BASEDIR/config, or /etc/dehydrated/config
  with its conf.d when that config's CERTDIR is the store), presets such as
  `letsencrypt` expanded as dehydrated 0.7 does; failing that, the one account under
  BASEDIR/accounts/ (named base64url(CA URL + newline)).
- any store: `ari: {directory: URL}` on the store, which also overrides the above.

Files are read capped; nothing near a private key is opened.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
from collections.abc import Callable

from ..plugins import Source
from ..sources.stores.certbot import CertbotStore
from ..sources.stores.dehydrated import DehydratedStore

MAX_CONFIG = 256 * 1024
DEHYDRATED_PRESETS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-test": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "zerossl": "https://acme.zerossl.com/v2/DV90",
    "buypass": "https://api.buypass.com/acme/directory",
    "buypass-test": "https://api.test4.buypass.no/acme/directory",
}
"""dehydrated 0.7.0's CA presets (its load_config)."""
_SYSTEM_CONFIGS = ("/etc/dehydrated/config", "/usr/local/etc/dehydrated/config")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Z_]+)=(.*)$")

DirectoryOf = Callable[[str], str | None]
"""lineage -> the directory URL its certificate came from (None: unknown)."""


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            content = file.read(MAX_CONFIG + 1)
    except OSError:
        return None
    if len(content) > MAX_CONFIG:
        return None
    return content.decode("utf-8", errors="replace")


def certbot_server(config_dir: str, lineage: str) -> str | None:
    """`server` from certbot's renewal/<lineage>.conf (ConfigObj: `key = value`)."""
    if "/" in lineage or lineage.startswith("."):
        return None
    text = _read(os.path.join(config_dir, "renewal", f"{lineage}.conf"))
    if text is None:
        return None
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and key.strip() == "server":
            return value.strip().strip("'\"") or None
    return None


def _shell_assignments(text: str) -> dict[str, str]:
    """Plain `NAME=value` lines of a dehydrated config (no code is run)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match is None:
            continue
        try:
            words = shlex.split(match.group(2), comments=True)
        except ValueError:
            continue
        value = words[0] if words else ""
        found[match.group(1)] = re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: found.get(m.group(1) or m.group(2), ""), value
        )
    return found


def _dehydrated_settings(path: str) -> dict[str, str] | None:
    text = _read(path)
    if text is None:
        return None
    settings = {"BASEDIR": os.path.dirname(path)}  # dehydrated's default BASEDIR
    settings |= _shell_assignments(text)
    conf_d = settings.get("CONFIG_D")
    if conf_d and os.path.isdir(conf_d):
        for name in sorted(os.listdir(conf_d)):
            if name.endswith(".sh") and (extra := _read(os.path.join(conf_d, name))):
                settings |= _shell_assignments(extra)
    return settings


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def dehydrated_ca(certs: str, config: str | None = None) -> str | None:
    """The CA a dehydrated CERTDIR's certificates came from."""
    base = os.path.dirname(os.path.abspath(certs))
    candidates = [config] if config else []
    candidates += [os.path.join(base, "config"), *_SYSTEM_CONFIGS]
    for candidate in candidates:
        settings = _dehydrated_settings(candidate)
        if settings is None:
            continue
        certdir = settings.get("CERTDIR") or os.path.join(settings["BASEDIR"], "certs")
        if candidate != config and not _same(certdir, certs):
            continue  # another dehydrated's config
        ca = settings.get("CA") or "letsencrypt"
        return DEHYDRATED_PRESETS.get(ca, ca)
    return _single_account(os.path.join(base, "accounts"))


def _single_account(accounts: str) -> str | None:
    try:
        names = [name for name in os.listdir(accounts) if not name.startswith(".")]
    except OSError:
        return None
    if len(names) != 1:
        return None  # several CAs: say nothing rather than guess
    try:
        decoded = base64.urlsafe_b64decode(names[0] + "=" * (-len(names[0]) % 4))
    except (binascii.Error, ValueError):
        return None
    url = decoded.decode("utf-8", errors="replace").strip()
    return url if url.startswith(("https://", "http://")) else None


def directory_lookup(source: Source, override: str | None) -> DirectoryOf | None:
    """How to find the directory of each lineage of `source`; None when its files never
    name one (a pem store without `ari.directory`)."""
    if override:
        return lambda lineage: override
    if isinstance(source, CertbotStore):
        return lambda lineage: certbot_server(source.path, lineage)
    if isinstance(source, DehydratedStore):
        found: list[str | None] = []

        def dehydrated(lineage: str) -> str | None:
            if not found:  # one config read per pass, and only if a certificate is due
                found.append(dehydrated_ca(source.path, getattr(source, "config", None)))
            return found[0]

        return dehydrated
    return None
