"""What a durable store keeps of a run, so that another replica can resume it (CONTRACT §8):
the transcript (`Transcript.dump`) and what the tools found (`RunContext`'s pages, withheld
writes, the report the model wrote, the data blocks' delimiter)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from agent.transcript import Transcript
from intake import AlertRecord
from tools import EscalationResult, RunContext


def saved(record: AlertRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(transcript, run state) of a record's run, as JSON-able values."""
    transcript = None if record.transcript is None else record.transcript.dump()
    ctx = record.run
    if ctx is None:
        return transcript, None
    return transcript, {
        "escalations": [asdict(e) for e in ctx.escalations],
        "withheld": list(ctx.withheld),
        "report_content": ctx.report_content,
        "report_filename": ctx.report_filename,
        "nonce": ctx.nonce,
    }


def restore(record: AlertRecord, data: dict[str, Any]) -> None:
    """Give a claimed record the run state `saved` stored (the agent resumes from it)."""
    if data.get("transcript"):
        record.transcript = Transcript.load(data["transcript"])
    if "nonce" in data:
        record.run = RunContext(
            alert=record.alert,
            trace_id=record.trace_id,
            shadow=False,
            escalations=[EscalationResult(**e) for e in data.get("escalations", [])],
            withheld=list(data.get("withheld", [])),
            report_content=data.get("report_content"),
            report_filename=data.get("report_filename"),
            occurrence=record.occurrence,
            nonce=data["nonce"],
        )
