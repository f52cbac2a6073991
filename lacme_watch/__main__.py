"""`python -m lacme_watch`, and the `lacme-watch` command (pyproject.toml's script)."""

import gc


def run() -> int:
    """The process's entry point. The cyclic collector is off while the modules a
    command needs are imported: imports make cycles that live as long as the process
    (modules, classes, functions), so its 30-45 collections of them are ~3 ms of a
    cron start for nothing; what start-up made is then frozen out of its walk."""
    gc.disable()
    try:
        from lacme_watch.cli.commands import main
    finally:
        gc.enable()
    # What start-up made (modules, classes, functions) lives as long as the process:
    # the cyclic collector need not walk it at each full collection. 10-20 ms of a
    # cron pass over one certificate, or over an unchanged 10,000-file store.
    gc.freeze()
    return main()


if __name__ == "__main__":
    raise SystemExit(run())
