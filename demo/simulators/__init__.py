"""Simulators of the runtime's outside world, served over real HTTP on loopback.

They are product code, typed and documented like the rest: the demo, the benchmarks and the
tests all run the real runtime against them.
- `llm`: an OpenAI-compatible chat-completions server, scripted or driven by a policy;
- `ops_service`: a monitored service's `/ops/*` API, recording every request, scriptable;
- `pagerduty`: PagerDuty's Events API v2 and REST API, with its rate limit if asked;
- `server`: any ASGI app under a real uvicorn server on a free loopback port.
"""
