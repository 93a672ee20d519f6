"""Reliability suite: the checker that compares what went into the hub with what came out, and
the fault scenarios run under load (``lienthong chaos``)."""
