"""Entry point of `make demo`: run the demo, map the outcome to an exit code.

The only place the demo reads the environment (`LLM_API_KEY`, `LLM_API_BASE_URL`,
`LLM_MODEL`) and looks at its terminal; everything else is built in code.

  python -m demo                              the agent acts at once (AGENT_MODE=live)
  python -m demo --approve                    each remediation write waits for your
                                              decision in the console (on a terminal)
  python -m demo --approve --auto-approve     the demo approves them itself
  python -m demo --keep                       keep everything running afterwards
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demo.approvals import ApproveMode

DEFAULT_RUN_DIR = Path(__file__).resolve().parent / ".run"

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
THINK_SECONDS = 0.3  # the scripted LLM's pace, so the turns can be followed on screen


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        help=f"where reports and the runtime log go (default: {DEFAULT_RUN_DIR})",
    )
    parser.add_argument(
        "--approve",
        action="store_true",
        help="run the runtime with AGENT_MODE=approve: each remediation write waits for a\n"
        "decision, made in the console (on a terminal) or by the demo (otherwise)",
    )
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="with --approve: the demo approves every write itself, through the API",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep everything running after the demo (to look around in the console)\nuntil Ctrl-C",
    )
    arguments = parser.parse_args(argv)
    if arguments.auto_approve and not arguments.approve:
        parser.error("--auto-approve needs --approve")
    return arguments


def approve_mode(arguments: argparse.Namespace) -> ApproveMode:
    """Nobody can press Approve for a demo without a terminal (CI, a pipe): the demo does."""
    from demo.approvals import ApproveMode

    if not arguments.approve:
        return ApproveMode.OFF
    if arguments.auto_approve or not sys.stdin.isatty():
        return ApproveMode.AUTO
    return ApproveMode.CONSOLE


async def _until_ctrl_c(ready: Callable[[], None]) -> None:
    """Call `ready()` once a Ctrl-C (SIGINT) would be heard, and return at the first one,
    which then stops the demo cleanly rather than interrupting it. The previous SIGINT
    handler is back afterwards."""
    loop = asyncio.get_running_loop()
    pressed = asyncio.Event()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, pressed.set)
    except (NotImplementedError, RuntimeError):  # no signal handling here: Ctrl-C interrupts
        ready()
        await asyncio.Event().wait()
    try:
        ready()
        await pressed.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        with contextlib.suppress(TypeError, ValueError):
            signal.signal(signal.SIGINT, previous)
    print("\nCtrl-C: stopping everything...")


async def _main(arguments: argparse.Namespace) -> int:
    from demo.run import run_demo  # imported here so Ctrl-C during start-up exits quietly

    result = await run_demo(
        sys.stdout,
        llm_api_key=os.environ.get("LLM_API_KEY") or None,
        llm_base_url=os.environ.get("LLM_API_BASE_URL") or None,
        llm_model=os.environ.get("LLM_MODEL") or None,
        run_dir=arguments.run_dir,
        think_seconds=THINK_SECONDS,
        approve=approve_mode(arguments),
        keep=_until_ctrl_c if arguments.keep else None,
    )
    if result.ok:
        print("\nDemo finished: everything was stopped.")
        return EXIT_OK
    print(f"\nDemo FAILED: {'; '.join(result.problems)}", file=sys.stderr)
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    arguments.run_dir = run_dir = arguments.run_dir.resolve()
    try:
        return asyncio.run(_main(arguments))
    except KeyboardInterrupt:
        print("\nInterrupted: everything was stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the demo's last word: say what failed, in one line
        print(f"\nDemo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"See the runtime log in {run_dir / 'runtime.log'}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
