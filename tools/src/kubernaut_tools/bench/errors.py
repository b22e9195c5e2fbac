"""The one error a benchmark run ends with."""


class BenchError(Exception):
    """A benchmark cannot produce honest figures (stated in one line)."""
