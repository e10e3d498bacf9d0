"""Progress display: rich bars per file and for the total, safe to update from worker threads."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# A bar per file is useful for a handful of files, noise for thousands: only files being
# transferred get one, and it disappears when the file is done.
NAME_WIDTH = 32


class BinarySpeedColumn(ProgressColumn):
    """Transfer speed in MiB/s, matching the binary units of the sizes beside it."""

    def render(self, task: Task) -> Text:
        """Return the task's speed in binary units (B/s up to GiB/s)."""
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        value, unit = float(speed), "B/s"
        for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
            if value < 1024 or unit == "GiB/s":
                break
            value /= 1024
        return Text(f"{value:.1f} {unit}", style="progress.data.speed")


def _short(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else "…" + name[-(NAME_WIDTH - 1) :]


class TransferProgress:
    """Bars for each file in flight plus an overall bar; silent when stderr is not a terminal."""

    def __init__(self, console: Console, total_bytes: int, total_files: int, *, label: str = "total"):
        self.console = console
        self.total_files = total_files
        self.label = label
        self.done_files = 0
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            BinarySpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._total = self._progress.add_task(self._total_description(), total=total_bytes)

    def __enter__(self) -> TransferProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            # Interrupted (Ctrl-C) or failed: erase the bars rather than leave a frozen one with a
            # speed and time left that no longer mean anything; the error line says what happened.
            self._progress.live.transient = True
        self._progress.stop()

    def _total_description(self) -> str:
        return f"[bold]{self.label}[/] {self.done_files}/{self.total_files} files"

    def add_file(self, name: str, size: int, completed: int = 0) -> TaskID:
        """Show a bar for a file starting its transfer (completed: bytes already there)."""
        task = self._progress.add_task(escape(_short(name)), total=size, completed=completed)
        if completed:
            self._progress.advance(self._total, completed)
        return task

    def advance(self, task: TaskID, count: int) -> None:
        """Count bytes sent (negative to take back a failed attempt's bytes)."""
        self._progress.advance(task, count)
        self._progress.advance(self._total, count)

    def finish(self, task: TaskID | None, *, counted: bool = True) -> None:
        """Drop a file's bar; count the file as done (uploaded, or failed) unless it was interrupted."""
        if task is not None:
            self._progress.remove_task(task)
        if counted:
            with self._lock:
                self.done_files += 1
                self._progress.update(self._total, description=self._total_description())

    def log(self, message: str, style: str | None = None) -> None:
        """Print a line above the bars (or plainly when there are none); no markup is read from it."""
        self.console.print(Text(message, style=style or ""), soft_wrap=True)
