"""One pass from scan to delivery (`passes`), and the run modes around it: the
daemon, its logging, sd_notify and metrics."""
