"""How `comfy-gateway generate` shows its jobs: live bars on a terminal, plain lines elsewhere.

`JobLine` is the pure part: what one job's line says after each event. The views only draw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gateway.models import JobProgress
from gateway.sdk.events import JobEnd, JobEvent, JobUpdate, ProgressUpdate, QueueUpdate


@dataclass
class JobLine:
    """One job as the user sees it: its name, a short state, and sampler steps (0 of 0 while unknown)."""

    name: str
    state: str = "queued"
    step: int = 0
    total_steps: int = 0
    finished: bool = False
    position: int | None = None

    @property
    def summary(self) -> str:
        """The state without the node and step: what a log line shows."""
        return "processing" if self.state.startswith(("step ", "processing")) else self.state

    def apply(self, event: JobEvent) -> None:
        if isinstance(event, JobUpdate | JobEnd):
            job = event.job
            self.finished = job.status in ("done", "failed")
            if job.status == "failed":
                self.state = f"failed: {job.error or 'no reason given'}"
            elif job.status == "done":
                self.state = "done"
                self.step = self.total_steps = max(self.total_steps, 1)
            elif job.status == "processing":
                self._progress(job.progress)
            else:  # a record at a status change may not repeat the place in the queue
                self._waiting(job.queue_position or self.position)
        elif isinstance(event, QueueUpdate) and not self.finished:
            self._waiting(event.queue_position)
        elif isinstance(event, ProgressUpdate) and not self.finished:
            self._progress(event.progress)

    def _waiting(self, position: int | None) -> None:
        self.position = position
        self.state = "waiting" if position is None else f"waiting, #{position} in queue"

    def _progress(self, progress: JobProgress | None) -> None:
        if progress is None:
            self.state = "processing"
            return
        self.step, self.total_steps = progress.step, progress.total_steps
        where = f" {progress.node_type}" if progress.node_type else ""
        self.state = f"step {progress.step}/{progress.total_steps}{where}" if progress.total_steps \
            else f"processing{where}"


class View:
    """Plain lines: a job's state on stderr whenever it changes (not every step), results on stdout."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self._out, self._err = out, err
        self._lines: dict[str, JobLine] = {}
        self._shown: dict[str, str] = {}

    def __enter__(self) -> View:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def add(self, number: int, job_id: str) -> None:
        self._lines[job_id] = JobLine(self._name(number, job_id))
        self._draw(job_id, self._lines[job_id])

    def update(self, job_id: str, event: JobEvent) -> None:
        line = self._lines[job_id]
        line.apply(event)
        self._draw(job_id, line)

    def saved(self, path: Path, seed: object) -> None:
        print(f"{path}  seed {seed}", file=self._out, flush=True)

    def _name(self, number: int, job_id: str) -> str:
        return f"#{number} {job_id}"

    def _draw(self, job_id: str, line: JobLine) -> None:
        state = line.summary
        if self._shown.get(job_id) != state:
            self._shown[job_id] = state
            print(f"{line.name}: {state}", file=self._err, flush=True)


class LiveView(View):
    """A rich progress bar per job (queue position while waiting, sampler steps while processing)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console.file, console.file)
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),
            TextColumn("{task.fields[state]}", markup=False), TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> LiveView:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def saved(self, path: Path, seed: object) -> None:
        self._console.print(f"{path}  seed {seed}", highlight=False, markup=False, soft_wrap=True)

    def _name(self, number: int, job_id: str) -> str:
        return f"#{number} {job_id[:8]}"

    def _draw(self, job_id: str, line: JobLine) -> None:
        if job_id not in self._tasks:
            self._tasks[job_id] = self._progress.add_task(line.name, total=None, state=line.state)
        self._progress.update(self._tasks[job_id], total=line.total_steps or None, completed=line.step,
                              state=line.state)
