"""The public surface is pinned against the live namespace, as httpx pins its own:
every public name bound in `lacme_watch` is in `__all__`, and every name in `__all__`
is bound. A change here is a change for plugin authors."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib.metadata import entry_points

import pytest

import lacme_watch
import lacme_watch.testing
from lacme_watch.events import EVENT_TYPES


def _public(module: types.ModuleType, keep: frozenset[str] = frozenset()) -> set[str]:
    """Names a module binds for its users: not private, not its own submodules."""
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name in keep) and not isinstance(value, types.ModuleType)
    }


def test_all_is_exactly_the_public_namespace() -> None:
    """Names load on first use (PEP 562): once each is looked up, the namespace holds
    exactly `__all__`, and dir() lists it all before any is."""
    assert set(dir(lacme_watch)) >= set(lacme_watch.__all__)
    for name in lacme_watch.__all__:
        getattr(lacme_watch, name)
    assert set(lacme_watch.__all__) == _public(lacme_watch, frozenset({"__version__"}))
    assert len(lacme_watch.__all__) == len(set(lacme_watch.__all__))


def test_a_name_loaded_on_demand_is_the_one_its_module_defines() -> None:
    import lacme_watch.events.cloudevents
    import lacme_watch.events.renewal
    import lacme_watch.reading.reader

    assert lacme_watch.Envelope is lacme_watch.events.cloudevents.Envelope
    assert lacme_watch.CertificateReader is lacme_watch.reading.reader.CertificateReader
    assert lacme_watch.events.Change is lacme_watch.events.renewal.Change
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        lacme_watch.Nothing  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        lacme_watch.events.Nothing  # noqa: B018


def test_a_bare_import_still_reaches_the_submodules() -> None:
    """`import lacme_watch` bound its submodules when it imported them all; it still does."""
    code = (
        "import lacme_watch\n"
        "assert lacme_watch.events.CertificateExpiring is lacme_watch.CertificateExpiring\n"
        "assert lacme_watch.events.lacme.CertificateIssued.kind == 'certificate_issued'\n"
        "assert lacme_watch.events.cloudevents.to_json is lacme_watch.to_json\n"
        "assert not hasattr(lacme_watch, 'nothing_of_the_kind')\n"
        "assert not hasattr(lacme_watch.events, 'nothing_of_the_kind')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_events_package_names_every_kind_without_loading_it() -> None:
    """KINDS (names only, for config and argparse) is EVENT_TYPES's keys in order."""
    import lacme_watch.events

    assert tuple(EVENT_TYPES) == lacme_watch.events.KINDS
    assert {kind: cls.kind for kind, cls in EVENT_TYPES.items()} == {k: k for k in EVENT_TYPES}
    assert [n for n in lacme_watch.events.__all__ if not hasattr(lacme_watch.events, n)] == []
    assert set(dir(lacme_watch.events)) >= set(lacme_watch.events.__all__)


def test_every_event_kind_is_exported() -> None:
    exported = {name: getattr(lacme_watch, name) for name in lacme_watch.__all__}
    missing = {kind for kind, cls in EVENT_TYPES.items() if exported.get(cls.__name__) is not cls}
    assert missing == set()


def test_every_type_a_plugin_names_is_exported() -> None:
    assert {
        "CertificateReader",
        "CertificateFacts",
        "Observation",
        "Problem",
        "ScanResult",
        "Issuance",
        "CrlSeen",
        "ServedChain",
        "Options",
        "Envelope",
        "Sink",
        "Source",
        "SinkError",
        "SourceError",
    } <= set(lacme_watch.__all__)


def test_the_testing_module_pins_its_surface_too() -> None:
    """Everything lacme_watch.testing defines publicly is in its __all__, and only that."""
    testing = lacme_watch.testing
    defined = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == testing.__name__
    }
    assert defined <= set(testing.__all__)
    assert [name for name in testing.__all__ if not hasattr(testing, name)] == []
    assert testing.TlsServer.__module__ == "lacme_watch.cli.loopback"  # product code, not a fake


def test_built_in_plugins_register_through_entry_points() -> None:
    assert {e.name for e in entry_points(group="lacme_watch.sinks")} >= {"log"}
    assert {e.name for e in entry_points(group="lacme_watch.stores")} >= {"lacme", "pem"}
    assert {e.name for e in entry_points(group="lacme_watch.authorities")} >= {"lacme"}
