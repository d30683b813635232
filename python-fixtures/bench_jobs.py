"""Jobs for bench/python_jobs_bench.py: ordinary Python functions, run by any RQ worker."""


def identity(x):
    """Return the argument: the cheapest job that still carries a payload and a result."""
    return x
