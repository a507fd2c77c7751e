"""Every error Evergreen raises on purpose descends from :class:`EvergreenError`.

    EvergreenError
    ├── SpecError                 a ModelMonitor field is invalid (permanent until the spec changes)
    │   └── MissingReference      a Secret or ConfigMap the spec names is missing (may appear later)
    ├── MetricsError              reading Prometheus failed
    │   ├── MetricsUnavailable    unreachable, timeout, 5xx, auth failure (temporary)
    │   ├── QueryRejected         Prometheus refused a query: bad PromQL (permanent, names the field)
    │   └── NoData                a query succeeded but returned nothing usable
    ├── AnalysisError             histograms that cannot be compared (e.g. no common buckets)
    ├── ResultError               a finished workload reported no usable result (fails that run)
    ├── ReportError               a review report cannot be drawn (nothing to show, no matplotlib)
    ├── ClusterError              talking to the Kubernetes API failed
    └── InputError                a file or flag given to the command line is unusable (exit 2)

The controller maps permanent errors to a condition on the one object that caused them and
temporary ones to a retry; nothing here ever stops the operator.
"""

from __future__ import annotations


class EvergreenError(Exception):
    """Base of all errors raised on purpose by Evergreen."""

    #: True when retrying without a change to the spec cannot help.
    permanent: bool = False


class SpecError(EvergreenError):
    """A ModelMonitor field is invalid; ``field`` is its dotted path (``spec.kpis[0].query``)."""

    permanent = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingReference(SpecError):
    """A Secret or ConfigMap named by the spec does not exist or lacks the key."""

    permanent = False


class MetricsError(EvergreenError):
    """Reading metrics failed."""


class MetricsUnavailable(MetricsError):
    """Prometheus could not be reached or did not answer in time; try again later."""


class QueryRejected(MetricsError):
    """Prometheus rejected a query (bad PromQL); ``field`` names where the query came from."""

    permanent = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NoData(MetricsError):
    """A query succeeded but returned no usable samples."""


class AnalysisError(EvergreenError):
    """Inputs to a statistic cannot be compared."""


class ResultError(EvergreenError):
    """A finished workload reported no usable result; ``source`` says where it was read."""

    permanent = True

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


class ReportError(EvergreenError):
    """A review report cannot be drawn: nothing to show, or the plotting library is missing."""


class ClusterError(EvergreenError):
    """A Kubernetes API call failed."""


class InputError(EvergreenError):
    """A file or flag given on the command line cannot be used; says where, what, and the fix.

    ``source`` is the file (``fraud.yaml:3:7``) or the flag (``--step``); ``field`` the
    manifest field when there is one.
    """

    permanent = True

    def __init__(self, source: str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{source}: {field}: {message}" if field else f"{source}: {message}")
        self.source = source
        self.field = field
        self.message = message
