"""Every configuration key the loader accepts is documented in README.md.

The keys are the ones lacme-watch's own loader asks for while it reads
config.example.yaml (every built-in store, authority and sink type is there): a key
added to config.py without a README line fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lacme_watch import options
from lacme_watch.config import load

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
_RULES = ("registered_domain", "exact_set", "failed_authorizations")


@pytest.fixture
def accepted(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Key paths (`expiry.overdue`, `sinks[].smtp.port`) the real loader asked for."""
    asked: set[str] = set()
    finish = options.Options.finish

    def recording(self: options.Options) -> None:
        section = re.sub(r"\[\d+\]", "[]", self.where.key)
        asked.update(f"{section}.{key}" if section else key for key in self._used)
        finish(self)

    monkeypatch.setattr(options.Options, "finish", recording)
    return asked


def _documented(path: str) -> bool:
    for rule in _RULES:  # documented once, as `rate_limits.rules.NAME`: {limit, window}
        path = path.replace(f"rate_limits.rules.{rule}", "rate_limits.rules.NAME")
    if path.startswith("rate_limits.rules.NAME."):
        return "`rate_limits.rules.NAME`" in README
    if "[]" not in path:
        return any(f"`{path}{end}" in README for end in ("`", ":", " "))
    tail = path.rpartition("[].")[2]
    key = tail.rpartition(".")[2]
    return any(form in README for form in (f"`{tail}`", f"`{path}`", f"`{key}`", f"{key}:"))


def test_every_accepted_key_is_in_the_readme(accepted: set[str]) -> None:
    load(ROOT / "config.example.yaml")
    assert len(accepted) > 50  # the recording saw the whole file
    sections = {path.rpartition(".")[0] for path in accepted}
    missing = sorted(p for p in accepted if p not in sections and not _documented(p))
    assert missing == []
