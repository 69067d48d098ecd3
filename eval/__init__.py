"""Replay evaluation (CONTRACT §10): how well an LLM and a prompt handle incidents.

Scenarios are files (`scenario.yaml`, `eval.scenario`); each is replayed through the real
runtime (webhook, intake, agent, tools, report) against services simulated from the scenario
(`eval.services`, wired by `eval.runner`); what happened is scored by a pure function
(`eval.scoring`), optionally graded by an LLM judge (`eval.judge`), and written as
`results.json` and markdown tables (`eval.report`). `python -m eval` is the command.
"""
