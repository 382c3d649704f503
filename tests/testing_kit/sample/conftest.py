from __future__ import annotations

from collections.abc import Callable

import pytest
import shop_jobs

import pgjobs


@pytest.fixture
def pgjobs_app(pgjobs_bind: Callable[[pgjobs.App], pgjobs.App]) -> pgjobs.App:
    """The application's own App, on this test's database."""
    return pgjobs_bind(shop_jobs.app)


@pytest.fixture(autouse=True)
def _fresh_audit_log() -> None:
    shop_jobs.audit_log.clear()
