"""`POST /webhook/generic`: this service's own alert schema (`models.GenericAlert`) -> a draft.

For scripts and platforms without a dedicated parser. `priority` wins over `severity`; a
severity word outside the contract's vocabulary leaves the default P3. `started_at` is taken
as given (naive means UTC); a sentinel time (Go's zero time, epoch 0) is null.
"""

from __future__ import annotations

from intake.parsers.common import (
    Draft,
    Ignored,
    Registry,
    find_service,
    severity_priority,
    validate,
)
from models import GenericAlert, Priority


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """Exactly one draft."""
    alert = validate(GenericAlert, body)
    return [
        Draft(
            key=f"generic:{alert.incident_id}",
            summary=alert.summary,
            state=alert.state,
            priority=alert.priority or severity_priority(alert.severity) or Priority.P3,
            service=find_service([alert.service], registry),
            started_at=alert.started_at,
            labels=alert.labels,
            url=alert.url,
            raw=body,
            key_loc=("incident_id",),
        )
    ]
