"""`python -m lacme_watch`."""

from lacme_watch.cli import main

raise SystemExit(main())
