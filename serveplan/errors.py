"""Errors a user can read: one sentence, what was wrong and what would be valid.

Expected outcomes (bad input, nothing fits) raise a ServeplanError; the CLI prints its message on one line
and exits with EXIT_USER_ERROR. Anything else is a bug and keeps its traceback (EXIT_INTERNAL_ERROR).
SERVEPLAN_DEBUG=1 shows the traceback for ServeplanErrors too.
"""

from __future__ import annotations

import difflib

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_LAUNCH_FAILED = 4


class ServeplanError(Exception):
    """Base of every error the user caused or must act on."""

    exit_code = EXIT_USER_ERROR


class ConfigError(ServeplanError):
    """A configuration value or override is invalid."""


class UnknownName(ConfigError):
    """A model, GPU, traffic preset or engine name that is not in the catalog."""

    def __init__(self, what: str, name: str, known: list[str]):
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=4, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"Unknown {what} '{name}'.{hint} Known: {', '.join(sorted(known))}.")
        self.name, self.known, self.close = name, known, close


class DoesNotFit(ServeplanError):
    """No candidate fits in GPU memory."""


class LaunchError(ServeplanError):
    """The engine did not start, or stopped, or a launch precondition failed."""

    exit_code = EXIT_LAUNCH_FAILED


def close_matches(name: str, known: list[str]) -> list[str]:
    return difflib.get_close_matches(name, known, n=4, cutoff=0.4)


def validation_sentence(err, prefix: str = "") -> str:  # noqa: ANN001 (a pydantic ValidationError)
    """The one sentence for a pydantic ValidationError: where, what, and the value given (first three)."""
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in (prefix, *e["loc"]) if x != "")
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"{loc}: {e['msg'].rstrip('.')}{got_s}" if loc else f"{e['msg'].rstrip('.')}{got_s}")
    return "Invalid configuration: " + "; ".join(parts) + "."
