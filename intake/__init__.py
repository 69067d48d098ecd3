"""Alert intake: from a platform's webhook payload to a dispatched agent run.

`intake.parsers` turns each platform's payload into normalized `Alert`s; the pipeline
decides what each alert is (`intake.lifecycle`: a new occurrence, a repeat, a resolve) and
what runs (`intake.workers`: per-service serialization, priority, global limit), with TTL,
drain and shutdown; `intake.history` remembers past occurrences.
"""

from intake.lifecycle import Ending
from intake.pipeline import Draining, Finalizer, Intake, Limits
from intake.records import AlertRecord, SubmitOutcome
from intake.workers import Runner

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
