"""The ModelMonitor contract: typed spec and status, and the CRD generated from them."""

from evergreen.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    parse_spec,
    parse_status,
)
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ModelMonitorStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ModelMonitorSpec",
    "ModelMonitorStatus",
    "parse_spec",
    "parse_status",
]
