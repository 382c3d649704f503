"""Helpers shared by several test directories, imported as ``support.NAME``.

``tests/`` is on ``sys.path`` during a test run: pytest (its default ``prepend`` import mode)
puts there the directory of ``tests/conftest.py``, which every test directory loads.

- :mod:`support.bouncer`: a real pgbouncer in transaction mode in front of a test database
  (used by ``tests/pgbouncer/`` and by the docs tests, ``tests/docs/``, for pages that run
  behind a pooler).
"""
