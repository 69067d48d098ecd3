"""Tools: what the agent can do (CONTRACT §4), behind guardrails, with redacted results.

The agent loop needs only `ToolExecutor` (definitions + execute), `RunContext` and
`ToolOutcome`; the runtime also uses `PagerDutyClient` (escalations outside a run, the
health probe), `default_report_name` and `write_report`.
"""

from tools.cloud import CloudTools, NotConfiguredCloud
from tools.context import RunContext, ToolOutcome
from tools.errors import Refused, ToolError
from tools.executor import ToolExecutor
from tools.pagerduty import EscalationResult, PagerDutyClient, severity_for
from tools.redact import Redactor
from tools.reports import default_report_name, write_report

__all__ = [
    "CloudTools",
    "EscalationResult",
    "NotConfiguredCloud",
    "PagerDutyClient",
    "Redactor",
    "Refused",
    "RunContext",
    "ToolError",
    "ToolExecutor",
    "ToolOutcome",
    "default_report_name",
    "severity_for",
    "write_report",
]
