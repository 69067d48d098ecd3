"""Alert intake: from a platform's webhook payload to a dispatched agent run.

`intake.parsers` turns each platform's payload into normalized `Alert`s; the pipeline
(dedup, per-service serialization, priority, global limit, TTL, drain) decides what runs.
"""

from intake.lifecycle import Ending
from intake.pipeline import Draining, Finalizer, Intake, Limits, Runner
from intake.records import AlertRecord, SubmitOutcome

__all__ = [
    "AlertRecord",
    "Draining",
    "Ending",
    "Finalizer",
    "Intake",
    "Limits",
    "Runner",
    "SubmitOutcome",
]
