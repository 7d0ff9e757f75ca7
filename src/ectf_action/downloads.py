"""A run's artifact downloads: each finished job's zip fetched and extracted in the
background while the flow goes on.

`Downloads` owns the worker pool, a private folder for the zips (outside the artifacts
folder, removed at the end), and the name of each job's folder. The client retries a
download that breaks off; here a failed download is only reported: it costs that job's
artifacts, never the run's report.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .artifacts import ExtractLimits, extract_zip, job_dir_name, read_log_tail
from .diagnostics import JobDiagnostics, scan_job_log
from .errors import BadRequest, Cancelled, EctfError
from .models import Job, JobStatus

if TYPE_CHECKING:
    from .settings import ArtifactsMode

DOWNLOAD_WORKERS = 4
DOWNLOAD_STOP_SECONDS = 2.0  # how long an interrupted run waits for downloads to stop


class JobOutputSource(Protocol):
    def download_job_output(
        self, flow: str, job_id: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Any: ...


@dataclass
class JobArtifacts:
    """What one job's download produced."""

    directory: Path | None = None
    files: int = 0
    size: int = 0
    log_tail: str = ""
    warnings: list[str] = field(default_factory=list)
    diagnostics: JobDiagnostics | None = None  # what the job's log says, scanned once


def wants_artifacts(job: Job, mode: ArtifactsMode) -> bool:
    """Whether *job*'s output is downloaded under `download-artifacts: mode`. A job whose
    reply leaves out has_artifacts is tried: the server answers 400 when there is
    nothing, and a silently lost log would be worse."""
    if mode == "none" or job.private or job.has_artifacts is False:
        return False
    if not job.status.finished:
        return False
    return mode == "all" or job.status is JobStatus.FAILED


class Downloads:
    """The downloads of one run, started as jobs finish and collected at the end."""

    def __init__(
        self,
        client: JobOutputSource,
        flow: str,
        *,
        artifacts_path: Path,
        limits: ExtractLimits,
        cancel: threading.Event,
        temp_root: Path | None = None,
        workers: int = DOWNLOAD_WORKERS,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._client = client
        self._redact = redact
        self._flow = flow
        self._artifacts_path = artifacts_path
        self._limits = limits
        self._cancel = cancel
        self._temp_root = temp_root
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ectf-artifacts")
        self._futures: dict[str, Future[JobArtifacts]] = {}
        self._jobs: dict[str, Job] = {}  # job id -> the job as it finished
        self._dir_names: dict[str, str] = {}  # job id -> folder name
        self._reported: set[str] = set()
        self._temp_dir: Path | None = None

    def __enter__(self) -> Downloads:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, job: Job) -> None:
        """Download and extract *job*'s output in the background (once per job)."""
        if job.id in self._futures:
            return
        self._temp()  # made here, in one thread, before any worker needs it
        dest = self._artifacts_path / self._dir_name(job)
        self._futures[job.id] = self._executor.submit(self._fetch, job, dest)
        self._jobs[job.id] = job

    def newly_finished(self) -> list[tuple[Job, JobArtifacts]]:
        """(job, artifacts) of the downloads that finished since the last call."""
        done = []
        for job_id, future in self._futures.items():
            if job_id in self._reported or not future.done() or future.cancelled():
                continue
            self._reported.add(job_id)
            done.append((self._jobs[job_id], future.result()))
        return done

    def collect(self) -> dict[str, JobArtifacts]:
        """Every job's artifacts by job id, once its download ended. An interrupted run
        does not wait: it reports what has arrived."""
        if self._cancel.is_set():
            return {
                job_id: future.result()
                for job_id, future in self._futures.items()
                if future.done() and not future.cancelled()
            }
        wait_futures(list(self._futures.values()))
        return {job_id: future.result() for job_id, future in self._futures.items()}

    def close(self) -> None:
        """Stop the downloads, then remove their folder. When interrupted, downloads in
        progress notice the cancel within moments; they get a short while to clean up
        their partial files before the folder goes, so none is left behind."""
        interrupted = self._cancel.is_set()
        self._executor.shutdown(wait=not interrupted, cancel_futures=interrupted)
        if interrupted:
            wait_futures(list(self._futures.values()), timeout=DOWNLOAD_STOP_SECONDS)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _dir_name(self, job: Job) -> str:
        """`job_dir_name`, made unique should two jobs share a folder name: the job id's
        start is added, then a count, until no other job of the run has it."""
        if job.id not in self._dir_names:
            taken = set(self._dir_names.values())
            base = job_dir_name(job.name)
            name = base
            if name in taken:
                name = base = f"{base}-{job_dir_name(job.id)[:8]}"
            count = 1
            while name in taken:
                count += 1
                name = f"{base}-{count}"
            self._dir_names[job.id] = name
        return self._dir_names[job.id]

    def _temp(self) -> Path:
        """A private folder for the zips, outside the artifacts folder."""
        if self._temp_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="ectf-action-", dir=self._temp_root))
        return self._temp_dir

    def _fetch(self, job: Job, dest: Path) -> JobArtifacts:
        """Download and extract one job's zip; every failure becomes a warning. What it
        says (its log, its warnings) is read from the server's files: redacted here."""
        found = self._download(job, dest)
        if found.directory is not None:
            found.diagnostics = scan_job_log(found.directory, job.name).redacted(self._redact)
        found.log_tail = self._redact(found.log_tail)
        found.warnings = [self._redact(warning) for warning in found.warnings]
        return found

    def _download(self, job: Job, dest: Path) -> JobArtifacts:
        found = JobArtifacts()
        zip_path = self._temp() / f"{job_dir_name(job.id)}.zip"
        try:
            self._client.download_job_output(self._flow, job.id, zip_path, cancel=self._cancel)
            if self._cancel.is_set():  # the run is being reported without it
                raise Cancelled("extraction skipped: the run was interrupted")
            clear_path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            report = extract_zip(zip_path, dest, self._limits, redact=self._redact)
            found.directory, found.files, found.size = dest, report.files, report.bytes
            found.warnings.extend(report.problems)
            if report.stopped:
                found.warnings.append(
                    f"extraction stopped at {report.cap or 'a cap'}; the folder holds only "
                    "part of the job's output"
                )
            found.log_tail = read_log_tail(dest)
        except Cancelled:
            found.warnings.append("artifacts not downloaded: the run was interrupted")
        except BadRequest as exc:
            if job.has_artifacts is not None:  # said it had some, then had none
                found.warnings.append(f"artifacts not downloaded: {exc}")
        except EctfError as exc:  # refused, broke off or damaged, after the client's retries
            found.warnings.append(f"artifacts not downloaded: {exc}")
        except OSError as exc:
            found.warnings.append(f"artifacts not saved: {exc}")
        except Exception as exc:  # one job's hostile zip must never cost the run its report
            found.warnings.append(f"artifacts not saved: {type(exc).__name__}: {exc}")
        finally:
            for leftover in (zip_path, zip_path.with_name(zip_path.name + ".part")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        return found


def clear_path(dest: Path) -> None:
    """Remove what is at *dest* (a file, a link, or a folder with all it holds), without
    following a link: a job's folder is replaced whole, never merged into."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
