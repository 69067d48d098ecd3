"""`python -m eval` (`make eval`): replay the scenarios through the runtime and score them.

    python -m eval [--model M1,M2] [--scenario NAME]... [--iterations N] [--prompt PATH]
                   [--judge-model M] [--scenarios DIR] [--out DIR] [--concurrency N]
    python -m eval capture INCIDENT_ID --from-url URL [--token T] [--out FILE]

The only place the evaluation reads the environment: LLM_API_KEY, LLM_API_BASE_URL,
LLM_MODEL (and SRE_PROMPT_PATH as the default prompt). Everything else the runtime needs is
provided here. Without LLM_API_KEY, the scripted reference policy plays the model.
Exit code 0 unless the harness itself failed (malformed scenarios are reported, not fatal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx
import openai

from eval.capture import POSTGRES_NOT_AVAILABLE, CaptureError, capture
from eval.harness import Plan, evaluate
from eval.judge import Judge
from eval.policies import LABEL, reference_policy
from eval.report import write
from eval.runner import ModelTarget, logs_into
from eval.scenario import load_scenarios

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "eval" / "scenarios"
RESULTS = ROOT / "eval" / "results"
SAMPLE_PROMPT = ROOT / "WINDSURF_SRE.md"
DEFAULT_BASE_URL = "https://models.inference.ai.azure.com"
DEFAULT_MODEL = "gpt-4o"
SCRIPTED_MODEL = "scripted-reference"
EXIT_OK, EXIT_USAGE = 0, 2


def run_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval", description="Replay evaluation.")
    parser.add_argument("--model", help="comma-separated model ids (default LLM_MODEL)")
    parser.add_argument("--scenario", action="append", help="a scenario name (repeatable)")
    parser.add_argument("--iterations", type=_positive, default=1)
    parser.add_argument("--prompt", type=Path, help="system prompt (default SRE_PROMPT_PATH)")
    parser.add_argument("--judge-model", help="grade each report with this model")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS, help="scenario folder")
    parser.add_argument("--out", type=Path, help="results folder (default eval/results/<time>)")
    parser.add_argument("--concurrency", type=_positive, default=1, help="runs at once (default 1)")
    return parser.parse_args(argv)


def capture_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval capture")
    parser.add_argument("incident_id")
    parser.add_argument("--from-url", help="base URL of the runtime that handled the incident")
    parser.add_argument("--token", default="", help="its OPS_AUTH_TOKEN")
    parser.add_argument("--out", type=Path, help="file to write (default ./<name>/scenario.yaml)")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


async def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    prompt = args.prompt or Path(env.get("SRE_PROMPT_PATH") or SAMPLE_PROMPT)
    if not prompt.is_file():
        print(f"eval: prompt {prompt} is not a readable file", file=out)
        return EXIT_USAGE
    loaded = load_scenarios(args.scenarios, args.scenario)
    for invalid in loaded.invalid:
        print(f"invalid scenario: {invalid.error}", file=out)
    folder = args.out or RESULTS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    api_key = env.get("LLM_API_KEY") or ""
    models = _models(args, env, api_key, out)
    async with _judge(args, env, api_key, out) as judge:
        plan = Plan(
            scenarios=loaded.scenarios,
            models=models,
            prompt=prompt,
            out=folder,
            iterations=args.iterations,
            invalid=loaded.invalid,
            judge=judge,
            concurrency=args.concurrency,
        )
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "runtime.log").open("w", encoding="utf-8") as log, logs_into(log) as hook:
            results = await evaluate(plan, progress=lambda line: print(line, file=out), on_app=hook)
    print("\n" + write(results, folder), file=out)
    if not api_key:
        print(f"NOTE: {LABEL}.", file=out)
    print(f"Results, transcripts and reports: {folder}", file=out)
    return EXIT_OK


def _models(
    args: argparse.Namespace, env: Mapping[str, str], api_key: str, out: TextIO
) -> list[ModelTarget]:
    if not api_key:
        print(f"LLM_API_KEY is not set: {LABEL}.", file=out)
        key = "eval-" + secrets.token_hex(16)
        return [ModelTarget(SCRIPTED_MODEL, key, policy=lambda _scenario: reference_policy)]
    names = (args.model or env.get("LLM_MODEL") or DEFAULT_MODEL).split(",")
    base_url = env.get("LLM_API_BASE_URL") or DEFAULT_BASE_URL
    return [ModelTarget(name.strip(), api_key, base_url) for name in names if name.strip()]


@contextlib.asynccontextmanager
async def _judge(
    args: argparse.Namespace, env: Mapping[str, str], api_key: str, out: TextIO
) -> AsyncIterator[Judge | None]:
    if not args.judge_model:
        yield None
        return
    if not api_key:
        print("--judge-model needs LLM_API_KEY: reports are not judged.", file=out)
        yield None
        return
    base_url = env.get("LLM_API_BASE_URL") or DEFAULT_BASE_URL
    async with openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0) as client:
        yield Judge(client=client, model=args.judge_model)


async def run_capture(args: argparse.Namespace, out: TextIO) -> int:
    if not args.from_url:
        print(f"eval capture: {POSTGRES_NOT_AVAILABLE}", file=out)
        return EXIT_USAGE
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(base_url=args.from_url, headers=headers) as client:
        try:
            text = await capture(client, args.incident_id)
        except CaptureError as exc:
            print(f"eval capture: {exc}", file=out)
            return EXIT_USAGE
    target = args.out or Path.cwd() / _name(text) / "scenario.yaml"
    if target.exists():
        print(f"eval capture: {target} exists; not overwritten", file=out)
        return EXIT_USAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"Scenario skeleton written to {target}: complete its `expect` section.", file=out)
    return EXIT_OK


def _name(text: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("name: "))
    return line.removeprefix("name: ").strip()


def main(argv: list[str], env: Mapping[str, str], out: TextIO) -> int:
    if argv[:1] == ["capture"]:
        return asyncio.run(run_capture(capture_arguments(argv[1:]), out))
    return asyncio.run(run(run_arguments(argv), env, out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ, sys.stdout))
