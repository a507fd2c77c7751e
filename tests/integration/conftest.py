"""Session fixtures with a real Prometheus: the backfilled showcase, and a live exporter.

- ``showcase_prometheus``: :func:`evergreen.simulation.catalog.showcase` backfilled (cached
  across runs under ``$EVERGREEN_CACHE_DIR``) and running; ``.scenario`` is the scenario and
  ``catalog.SHOWCASE_TIMES`` its ground truth. Query it at explicit times inside the data.
- ``live_stack``: a :class:`LiveStack` (empty Prometheus scraping a
  :class:`LiveModelTraffic` every second), shared by the session and reset to healthy
  settings around every test. The first scrape costs ~5 s once per session.

Tests are skipped when the prometheus/promtool binaries are missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from evergreen.simulation import (
    BinaryNotFoundError,
    LiveModelTraffic,
    PrometheusServer,
    catalog,
)

Result = list[dict[str, Any]]


@dataclass(frozen=True)
class LiveStack:
    """A Prometheus scraping live model traffic every second."""

    prometheus: PrometheusServer
    traffic: LiveModelTraffic

    def wait_until(self, expr: str, predicate: Callable[[Result], bool], timeout: float = 15.0) -> Result:
        """Poll ``expr`` (evaluated now) until ``predicate`` holds; fail with the last result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.prometheus.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"{expr!r} did not satisfy the condition in {timeout}s: {result}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def showcase_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The showcase scenario's two weeks, backfilled and served."""
    try:
        server = PrometheusServer.from_scenario(
            catalog.showcase(), tmp_path_factory.mktemp("showcase-prometheus")
        )
    except BinaryNotFoundError as error:
        pytest.skip(str(error))
    with server:
        yield server


@pytest.fixture(scope="session")
def live_stack_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Started once: live traffic and a Prometheus that has scraped it at least once."""
    with LiveModelTraffic() as traffic:
        try:
            server = PrometheusServer.empty(
                tmp_path_factory.mktemp("live-prometheus"), scrape_targets=[traffic.target]
            )
        except BinaryNotFoundError as error:
            pytest.skip(str(error))
        with server:
            stack = LiveStack(server, traffic)
            stack.wait_until("model_predictions_total", bool, timeout=30.0)
            yield stack


@pytest.fixture
def live_stack(live_stack_session: LiveStack) -> Iterator[LiveStack]:
    """The session's live stack with healthy settings, exporting, before and after the test."""
    traffic = live_stack_session.traffic

    def heal() -> None:
        traffic.reset()
        if traffic.paused:
            traffic.resume()

    heal()
    yield live_stack_session
    heal()
