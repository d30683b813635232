"""Python twins of rq-worker's built-in jobs (`rq_worker.diag`), for the compat tests.

Put `python-fixtures/` on PYTHONPATH so that Python enqueuers can pass these functions by
reference and a Python `rq worker` can run the very jobs rq-worker runs natively.
"""
