"""Suite-wide settings.

With ``EVERGREEN_REQUIRE_BINARIES=1`` (set by CI) a missing prometheus, promtool, chromium or etcd fails the
run instead of skipping the tests that need it, so CI cannot go green by testing less, and
hypothesis runs derandomized.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

# CI explores the same examples on every run (a red build must be reproducible, not a dice
# roll) and never fails a property on timing alone on a loaded 2-core machine.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("EVERGREEN_REQUIRE_BINARIES") == "1" else "dev")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("EVERGREEN_REQUIRE_BINARIES") != "1":
        return
    missing = [name for name in ("prometheus", "promtool", "chromium", "etcd") if shutil.which(name) is None]
    if missing:
        raise pytest.UsageError(f"EVERGREEN_REQUIRE_BINARIES=1 but {', '.join(missing)} not on PATH")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("EVERGREEN_REQUIRE_BINARIES") == "1" and report.skipped and call.when == "setup":
        report.outcome = "failed"
        report.longrepr = f"skipped although EVERGREEN_REQUIRE_BINARIES=1: {report.longrepr}"
