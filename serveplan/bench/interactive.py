"""What a bench run shows and hears: its progress bar (rich, optional) and SIGINT/SIGTERM, which stop the
run but keep what it measured."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Any, Callable


class ProgressBar:
    """A rich progress bar of requests done, or nothing when off."""

    def __init__(self, on: bool):
        self.on = on
        self._progress: Any = None
        self._task: Any = None

    def start(self, total: int | None, description: str) -> None:
        if not self.on:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]bench[/] {task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def update(self, done: int, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, description=description)

    def stop(self, done: int, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, description=description)
            self._progress.stop()
            self._progress = None


def on_interrupt(callback: Callable[[], None]) -> list:
    """Route SIGINT/SIGTERM to callback on the running event loop (main thread only); returns what to
    restore_signals() afterwards."""
    installed: list = []
    if threading.current_thread() is not threading.main_thread():
        return installed
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            prev = signal.getsignal(sig)
            loop.add_signal_handler(sig, callback)
            installed.append((sig, prev))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    return installed


def restore_signals(installed: list) -> None:
    loop = asyncio.get_running_loop()
    for sig, prev in installed:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
