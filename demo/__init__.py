"""`make demo` (`python -m demo`): the whole system on one machine, in one process.

The runtime, two demo services with injected faults, a local PagerDuty capture and (without
`LLM_API_KEY`) a scripted local LLM; two GCP alerts, followed live, reported, summarised.
"""
