"""What the model is told about each tool. Written for the model: when to use it, what it
returns, and the limits it will meet (so a refusal is no surprise)."""

CALL_OPS = (
    "Call a registered service's /ops/* operations API and return its HTTP status code and "
    "JSON body. GET to read: /ops/status (health and golden signals), /ops/health (deep "
    "dependency checks), /ops/metrics, /ops/errors (recent errors), /ops/dependencies, "
    "/ops/config. POST only for a remediation the service documents (e.g. /ops/restart, "
    "/ops/cache/clear); POSTs are writes and are withheld in shadow mode. Only paths under "
    "/ops/ are allowed: no host, scheme, query string, '..' or percent-encoding. An identical "
    "read repeated in one run is answered from the first result until a write happens."
)

LOGS = (
    "Search the service's recent logs in the cloud provider (read-only). Use it to find "
    "error messages, stack traces and when problems started. Narrow with `query`, a "
    "minimum `severity` and `minutes`; results are capped at `limit` entries."
)

METRICS = (
    "Read a time series for the service from the cloud provider (read-only): latency, "
    "error counts, CPU, memory, instance count. Give the provider's metric type, a window "
    "in minutes and optionally an aggregation."
)

SCALE = (
    "Change the replica count of a service, only within its configured scaling bounds "
    "(given in the alert context). Requests outside the bounds, or for services without "
    "bounds, are refused. Give a concrete reason: it is recorded for the on-call team. "
    "A write: withheld in shadow mode."
)

ESCALATE = (
    "Page the on-call human through PagerDuty for this incident. Do this when you cannot "
    "resolve the incident safely yourself, or when customer impact continues. The summary "
    "is what the human reads first (<= 1024 characters); put your findings, what you tried "
    "and what you suggest in `details`. Repeated calls update the same PagerDuty incident."
)

ACKNOWLEDGE = (
    "Acknowledge (someone is on it) or resolve (it is over) this incident's PagerDuty "
    "alert. Resolve only after verifying the service is healthy again."
)

REPORT = (
    "Write the incident report (markdown): summary, impact, timeline, root cause, actions "
    "taken, follow-ups. One file per incident: calling again overwrites the same file, so "
    "always send the complete report. Secrets are redacted before it is written."
)
