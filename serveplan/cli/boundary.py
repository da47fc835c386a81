"""The one boundary between the commands and the user: _guard runs a command and turns what it raised into an
exit status (a user mistake: one sentence, exit 2; a failed launch: 4; a bug: its traceback, 3; a closed pipe:
quietly, 141), and _console is the Rich console every command prints through."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from serveplan.errors import EXIT_INTERNAL_ERROR, ServeplanError

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool killed by a closed pipe


def _console(stderr: bool = False):  # noqa: ANN202
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's default exits 1, which `plan` uses for "SLO not met"
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(stderr=stderr, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _guard(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        rc = fn(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not as "Exception ignored" at interpreter exit
        return rc
    except BrokenPipeError:
        if not _stdout_closed():
            return _internal_error()
        # The reader went away (`plan --json | head -1`): stop quietly, as a SIGPIPE'd Unix tool would.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except ServeplanError as e:
        if os.environ.get("SERVEPLAN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    import traceback

    traceback.print_exc()
    print("internal error: this is a serveplan bug; please report it with the traceback above.",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports POLLERR on it); True where unknown."""
    try:
        import select

        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real fd (a test's StringIO)
        return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of what is still buffered cannot
    raise again (the recipe in Python's signal module documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
