"""A folder of attack packages, kept up to date: `sync_packages` downloads each package
that is new or changed, in parallel, and decrypts those whose keys it is given.

The server sends no content hash, so the folder keeps a manifest (`.ectf-packages.json`:
each package's file, size, SHA-256 and the validators the server sent). A run trusts it:
a package whose file is there at the size recorded is not asked for again, so a run with
nothing new sends one request, the list. `refresh` checks every package again, with a
conditional request (If-None-Match / If-Modified-Since) when the server sent validators,
else by downloading it and comparing the SHA-256: an unchanged package keeps its file.

Names come from the server and are hostile: only plain names (letters, digits, `.`, `_`,
`-`, not starting with a dot) become files, `<name>.enc` and `<name>.zip` in the folder.
Every file is written to a temp file beside it and renamed, so a run that is killed
leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from .crypto import check_available, decrypt_file
from .errors import Cancelled, EctfError, InvalidInput, ProtocolError

MANIFEST_NAME = ".ectf-packages.json"
MANIFEST_FORMAT = 1
SYNC_WORKERS = 4
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Status = Literal["new", "changed", "unchanged", "failed"]


class PackageDownloadLike(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str: ...

    @property
    def last_modified(self) -> str: ...


class PackageSource(Protocol):
    """What a sync needs of the server (`EctfClient` is one)."""

    def list_packages(self) -> list[str]: ...

    def download_package_if_changed(
        self,
        name: str,
        dest: Path,
        *,
        etag: str = "",
        last_modified: str = "",
        cancel: threading.Event | None = None,
    ) -> PackageDownloadLike | None: ...


@dataclass(frozen=True)
class Entry:
    """What the manifest knows of one package's file."""

    size: int
    sha256: str
    etag: str = ""
    last_modified: str = ""
    decrypted_sha256: str = ""  # the `.enc` that `<name>.zip` was decrypted from


@dataclass(frozen=True)
class PackageResult:
    name: str  # as the server sent it: clean it before showing it
    status: Status
    file: str = ""  # `<name>.enc`, relative to the folder
    size: int | None = None
    sha256: str = ""
    decrypted: str = ""  # `<name>.zip` when this run decrypted it
    error: str = ""  # why it failed (the download, or the decryption)

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncReport:
    directory: Path
    results: list[PackageResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # trouble that cost no package
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(result.failed for result in self.results)

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in ("new", "changed", "unchanged")}
        for result in self.results:
            if result.status in counts:
                counts[result.status] += 1
        counts["decrypted"] = sum(1 for r in self.results if r.decrypted)
        counts["failed"] = sum(1 for r in self.results if r.failed)
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "packages": [result.to_json() for result in self.results],
            "counts": self.counts(),
            "notes": list(self.notes),
            "interrupted": self.interrupted,
        }


def is_plain_name(name: str) -> bool:
    """A name that can be a file name in the folder and nothing else."""
    return _PLAIN_NAME.fullmatch(name) is not None


def load_keys(text: str, *, name: str = "--keys") -> dict[str, str]:
    """A YAML or JSON mapping team -> key. Keys must be strings: YAML reads an unquoted
    `0123` as a number, which would not be the key the organizers posted."""
    from .validation import parse_mapping

    keys: dict[str, str] = {}
    for team, key in parse_mapping(text, name=name).items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(
                name, f"the key of {team!r} must be a non-empty string (quote it in YAML)"
            )
        keys[team] = key
    return keys


def sync_packages(
    source: PackageSource,
    directory: Path,
    *,
    keys: Mapping[str, str] | None = None,
    refresh: bool = False,
    cancel: threading.Event | None = None,
    workers: int = SYNC_WORKERS,
    on_result: Callable[[PackageResult], None] | None = None,
) -> SyncReport:
    """Bring *directory* up to date with the server's packages; *on_result* hears of
    each package in name order as soon as it and those before it are done."""
    keys = dict(keys or {})
    if keys:
        check_available()
    cancel = cancel or threading.Event()
    _prepare(directory)
    report = SyncReport(directory)
    manifest = _read_manifest(directory, report.notes)
    names = sorted(set(source.list_packages()))
    report.notes.extend(
        f"no package named {team!r} on the server: its key was not used"
        for team in sorted(set(keys) - set(names))
    )
    executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ectf-packages")
    try:
        futures: list[tuple[str, Future[tuple[PackageResult, Entry | None]]]] = [
            (
                name,
                executor.submit(
                    _sync_one, source, directory, name, manifest.get(name), keys, refresh, cancel
                ),
            )
            for name in names
        ]
        for name, future in futures:
            result, entry = future.result()
            if entry is not None:
                manifest[name] = entry
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        report.interrupted = cancel.is_set()
        executor.shutdown(wait=True, cancel_futures=True)
        _write_manifest(directory, manifest, report.notes)
    return report


def _sync_one(
    source: PackageSource,
    directory: Path,
    name: str,
    known: Entry | None,
    keys: Mapping[str, str],
    refresh: bool,
    cancel: threading.Event,
) -> tuple[PackageResult, Entry | None]:
    """One package: (what happened, what the manifest should now say of it)."""
    if not is_plain_name(name):
        return PackageResult(name, "failed", error="not a plain name; nothing saved"), None
    if cancel.is_set():
        return PackageResult(name, "failed", error="interrupted"), known
    try:
        result, entry = _download(source, directory, name, known, refresh, cancel)
    except Cancelled:
        return PackageResult(name, "failed", error="interrupted"), known
    except (EctfError, OSError) as exc:
        return PackageResult(name, "failed", error=str(exc)), known
    key = keys.get(name)
    if key is None:
        return result, entry
    zip_path = directory / f"{name}.zip"
    if entry.decrypted_sha256 == entry.sha256 and zip_path.is_file():
        return result, entry
    try:
        decrypt_file(directory / result.file, zip_path, key)
    except (EctfError, OSError) as exc:
        return replace(result, error=f"not decrypted: {exc}"), entry
    return replace(result, decrypted=zip_path.name), replace(entry, decrypted_sha256=entry.sha256)


def _download(
    source: PackageSource,
    directory: Path,
    name: str,
    known: Entry | None,
    refresh: bool,
    cancel: threading.Event,
) -> tuple[PackageResult, Entry]:
    enc = directory / f"{name}.enc"
    present = enc.is_file()
    # the manifest vouches for the file only while it is there at the size it recorded
    trusted = known if known is not None and present and enc.stat().st_size == known.size else None
    if trusted is not None and not refresh:
        return _unchanged(name, enc, trusted), trusted
    temp = directory / f".{name}.enc.{secrets.token_hex(4)}.new"
    try:
        got = source.download_package_if_changed(
            name,
            temp,
            etag=trusted.etag if trusted else "",
            last_modified=trusted.last_modified if trusted else "",
            cancel=cancel,
        )
        if got is None:
            if trusted is None:
                raise ProtocolError(f"the server answered 304 for {name} to a plain request")
            return _unchanged(name, enc, trusted), trusted
        digest = _sha256(temp)
        before = trusted.sha256 if trusted else (_sha256(enc) if present else "")
        entry = Entry(
            got.size,
            digest,
            got.etag,
            got.last_modified,
            known.decrypted_sha256 if known else "",
        )
        if digest == before:  # the same bytes: the old file stays
            return _unchanged(name, enc, entry), entry
        os.replace(temp, enc)
        status: Status = "changed" if present else "new"
        return PackageResult(name, status, enc.name, got.size, digest), entry
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _unchanged(name: str, enc: Path, entry: Entry) -> PackageResult:
    return PackageResult(name, "unchanged", enc.name, entry.size, entry.sha256)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _prepare(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise InvalidInput("DIR", f"{str(directory)!r} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput("DIR", f"cannot create {str(directory)!r}: {exc.strerror}") from None


# -- the manifest --------------------------------------------------------------------------


def _read_manifest(directory: Path, notes: list[str]) -> dict[str, Entry]:
    """The manifest's entries; a damaged one is read as empty (every package is then
    checked again, by its bytes), with a note."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        notes.append(f"{MANIFEST_NAME} could not be read ({exc}); checking every package")
        return {}
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict):
        notes.append(f"{MANIFEST_NAME} is not a manifest; checking every package")
        return {}
    return dict(_entries(packages.items()))


def _entries(items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[str, Entry]]:
    for name, value in items:
        if not isinstance(value, dict):
            continue
        size, digest = value.get("size"), value.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(digest, str):
            continue
        etag, modified, decrypted = (
            text if isinstance(text := value.get(key), str) else ""
            for key in ("etag", "last_modified", "decrypted_sha256")
        )
        yield str(name), Entry(size, digest, etag, modified, decrypted)


def _write_manifest(directory: Path, manifest: Mapping[str, Entry], notes: list[str]) -> None:
    path = directory / MANIFEST_NAME
    temp = directory / f"{MANIFEST_NAME}.{secrets.token_hex(4)}.part"
    document = {
        "format": MANIFEST_FORMAT,
        "packages": {
            name: {"file": f"{name}.enc", **asdict(entry)}
            for name, entry in sorted(manifest.items())
        },
    }
    try:
        temp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        notes.append(f"{MANIFEST_NAME} not written ({exc.strerror}): the next run checks again")
        with contextlib.suppress(OSError):
            temp.unlink()
