"""The agent: the LLM loop that diagnoses an alert, and how every incident ends in a report."""

from agent.finalize import Finalizer
from agent.llm import LLM, LLMError
from agent.loop import Agent, Approvals, RunEnd
from agent.report import ReportInput, ReportWriter

__all__ = [
    "LLM",
    "Agent",
    "Approvals",
    "Finalizer",
    "LLMError",
    "ReportInput",
    "ReportWriter",
    "RunEnd",
]
