"""Tools: what the agent can do (CONTRACT §4), behind guardrails, with redacted results.

The agent loop needs only `ToolExecutor` (definitions + execute), `RunContext` and
`ToolOutcome`; the runtime also uses `Pager` (every PagerDuty event, through one bounded
sender), `PagerDutyClient` (what the pager sends with), `promised_report_name` and
`write_report`.
"""

from tools.cloud import CloudTools, NotConfiguredCloud
from tools.context import RunContext, ToolOutcome
from tools.errors import Refused, ToolError
from tools.executor import ToolExecutor
from tools.pager import Pager
from tools.pagerduty import (
    Escalation,
    EscalationResult,
    PagerDutyClient,
    PagerDutyEvents,
    severity_for,
)
from tools.redact import Redactor
from tools.reports import default_report_name, promised_report_name, write_report

__all__ = [
    "CloudTools",
    "Escalation",
    "EscalationResult",
    "NotConfiguredCloud",
    "Pager",
    "PagerDutyClient",
    "PagerDutyEvents",
    "Redactor",
    "Refused",
    "RunContext",
    "ToolError",
    "ToolExecutor",
    "ToolOutcome",
    "default_report_name",
    "promised_report_name",
    "severity_for",
    "write_report",
]
