"""Installing a plugin distribution for a test: the *.dist-info pip would write, on sys.path.

importlib.metadata finds entry points exactly as it finds an installed package's, so
lookup() goes through its real code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def install(
    site: Path, name: str, entry_points: Mapping[str, Mapping[str, str]], version: str = "1.0"
) -> Path:
    """Write `name`'s metadata and entry points under `site` (put `site` on sys.path)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items())
            for group, entries in entry_points.items()
        )
    )
    return info
