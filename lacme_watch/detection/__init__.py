"""From what sources showed to what happened: thresholds, renewal policies, rate
limits, chains, profiles, and `detect()` itself. Mostly pure."""
