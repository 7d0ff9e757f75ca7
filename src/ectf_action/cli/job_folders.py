"""Job artifacts into a folder from the command line, extracted as the action does.

`JobFolders` runs `downloads.Downloads` (the same pool, the same folder per job, the
same hostile-zip safety and caps) into a staging folder inside DIR, and moves a job's
folder into DIR only once its extraction has ended: every folder in DIR is complete,
even when a signal stops the command halfway. One progress line per job as it ends.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_OK, EXIT_SERVER, InvalidInput

if TYPE_CHECKING:
    from ..clock import Clock
    from ..downloads import Downloads, JobArtifacts, JobOutputSource
    from ..models import Job
    from ..settings import ArtifactsMode

WAIT_STEP_SECONDS = 0.05  # how often the progress lines are looked for
STAGING_PREFIX = ".ectf-partial-"


def default_max_mb() -> float:
    """The action's own `max-artifact-mb` default: the CLI extracts within the same cap."""
    from ..settings import INPUTS

    return float(next(spec.default for spec in INPUTS if spec.name == "max-artifact-mb"))


@dataclass
class SavedJob:
    """One job's line in `--json`: what was written for it, and what went wrong."""

    job: Job
    folder: Path | None = None
    files: int = 0
    size: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Its artifacts were wanted and none could be saved."""
        return self.folder is None and bool(self.warnings)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.name,
            "job_id": self.job.id,
            "status": self.job.status_text,
            "folder": None if self.folder is None else str(self.folder),
            "files": self.files,
            "bytes": self.size,
            "warnings": list(self.warnings),
        }


def check_destination(dest: Path, *, force: bool, option: str) -> Path:
    """DIR may be new or empty; one that holds anything needs --force, since a job's
    folder there is replaced (a job named like one of your folders would take it)."""
    if dest.exists() and not dest.is_dir():
        raise InvalidInput(option, f"{str(dest)!r} exists and is not a folder")
    if dest.is_dir() and not force and any(dest.iterdir()):
        raise InvalidInput(
            option,
            f"{str(dest)!r} is not empty; pass --force to replace the job folders in it, or "
            "name a new folder",
        )
    return dest


class JobFolders:
    """The downloads of one command into *dest*, each job's folder moved there once whole.

    Use it as a context manager inside the command's signal handling: *cancel* stops the
    downloads; leaving the block removes the staging folder and whatever is in it.
    """

    def __init__(
        self,
        client: JobOutputSource,
        flow: str,
        dest: Path,
        *,
        cancel: threading.Event,
        clock: Clock,
        note: Callable[[str], None],
        max_mb: float | None = None,
    ) -> None:
        from ..livelog import LiveLog
        from ..settings import artifact_cap_bytes

        self._client = client
        self._flow = flow
        self._dest = dest
        self._cancel = cancel
        self._max_bytes = artifact_cap_bytes(max_mb or default_max_mb())
        self._log = LiveLog(lambda line: note(line + "\n"), clock)
        self._staging: Path | None = None
        self._downloads: Downloads | None = None
        self._started: dict[str, Job] = {}
        self._ended = 0

    def __enter__(self) -> JobFolders:
        from ..artifacts import ExtractLimits
        from ..downloads import Downloads

        self._dest.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self._dest))
        self._downloads = Downloads(
            self._client,
            self._flow,
            artifacts_path=self._staging,
            limits=ExtractLimits(max_bytes=self._max_bytes),
            cancel=self._cancel,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._downloads is not None:
            self._downloads.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    @property
    def _pool(self) -> Downloads:
        if self._downloads is None:
            raise RuntimeError("JobFolders is used outside its `with` block")
        return self._downloads

    def start_finished(self, jobs: tuple[Job, ...], mode: ArtifactsMode) -> None:
        """Start the download of each finished job that *mode* wants (once per job)."""
        from ..downloads import wants_artifacts

        for job in jobs:
            if job.id not in self._started and wants_artifacts(job, mode):
                self._started[job.id] = job
                self._pool.start(job)

    def report(self) -> None:
        """Move each download that ended into place, and say so, one line per job."""
        for job_name, found in self._pool.newly_finished():
            self._ended += 1
            self._move_into_place(found)
            self._log.artifacts(job_name, found, str)

    def wait(self) -> None:
        """Report every download as it ends, until all did or the cancel came."""
        while self._ended < len(self._started) and not self._cancel.wait(WAIT_STEP_SECONDS):
            self.report()
        self.report()

    def saved(self) -> list[SavedJob]:
        """What was written for each job started, in the order they were started; when
        interrupted, the downloads that had not ended are listed with nothing written."""
        found = self._pool.collect()
        saved = []
        for job_id, job in self._started.items():
            artifacts = found.get(job_id)
            if artifacts is None:
                saved.append(SavedJob(job, warnings=["not downloaded: interrupted"]))
                continue
            self._move_into_place(artifacts)
            saved.append(
                SavedJob(
                    job, artifacts.directory, artifacts.files, artifacts.size, artifacts.warnings
                )
            )
        return saved

    def _move_into_place(self, found: JobArtifacts) -> None:
        """A whole job folder, from staging into DIR (replacing an older one)."""
        from ..downloads import clear_path

        staged = found.directory
        if staged is None or self._staging is None or staged.parent != self._staging:
            return
        final = self._dest / staged.name
        clear_path(final)
        staged.rename(final)
        found.directory = final


def exit_code_of(saved: list[SavedJob]) -> int:
    """0 when every wanted job's artifacts were saved (entries a zip refused are only
    warnings), 3 when some job's could not be downloaded or saved at all."""
    return EXIT_SERVER if any(job.failed for job in saved) else EXIT_OK
