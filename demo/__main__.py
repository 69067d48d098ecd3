"""Entry point of `make demo`: run the demo, map the outcome to an exit code.

The only place the demo reads the environment (`LLM_API_KEY`, `LLM_API_BASE_URL`,
`LLM_MODEL`); everything else is built in code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEFAULT_RUN_DIR = Path(__file__).resolve().parent / ".run"

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
THINK_SECONDS = 0.3  # the scripted LLM's pace, so the turns can be followed on screen


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        help=f"where reports and the runtime log go (default: {DEFAULT_RUN_DIR})",
    )
    return parser.parse_args(argv)


async def _main(run_dir: Path) -> int:
    from demo.run import run_demo  # imported here so Ctrl-C during start-up exits quietly

    result = await run_demo(
        sys.stdout,
        llm_api_key=os.environ.get("LLM_API_KEY") or None,
        llm_base_url=os.environ.get("LLM_API_BASE_URL") or None,
        llm_model=os.environ.get("LLM_MODEL") or None,
        run_dir=run_dir,
        think_seconds=THINK_SECONDS,
    )
    if result.ok:
        print("\nDemo finished: everything was stopped.")
        return EXIT_OK
    print(f"\nDemo FAILED: {'; '.join(result.problems)}", file=sys.stderr)
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    run_dir = _arguments(sys.argv[1:] if argv is None else argv).run_dir.resolve()
    try:
        return asyncio.run(_main(run_dir))
    except KeyboardInterrupt:
        print("\nInterrupted: everything was stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the demo's last word: say what failed, in one line
        print(f"\nDemo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"See the runtime log in {run_dir / 'runtime.log'}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
