"""`sync_packages`: a folder kept up to date with the server's attack packages, over the
real client against the simulator (and a small fake source where the simulator cannot
misbehave as needed: hostile names, proof of parallel downloads)."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ectf_action.client import Download, EctfClient
from ectf_action.errors import Forbidden
from ectf_action.packages import MANIFEST_NAME, PackageResult, SyncReport, sync_packages
from ectf_action.simulator import Simulator, load_scenario

TEAMS = ("rival-team", "sim-team")


def start(text: str = "") -> Simulator:
    return Simulator(load_scenario(text)).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim: Simulator) -> Iterator[EctfClient]:
    with EctfClient(sim.url, sim.token, retries=1, backoff_factor=0, sleep=lambda _: None) as c:
        yield c


def served(sim: Simulator, team: str) -> bytes:
    return sim.engine.package_file(sim.scenario.default, team).path.read_bytes()


def statuses(report: SyncReport) -> dict[str, str]:
    return {result.name: result.status for result in report.results}


def requests_since(sim: Simulator, mark: int) -> list[tuple[str, int | None]]:
    return [(record.path, record.status) for record in sim.requests[mark:]]


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# -- what is downloaded, and when --------------------------------------------------------


def test_a_first_sync_downloads_every_package(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    heard: list[PackageResult] = []
    report = sync_packages(client, tmp_path / "packages", on_result=heard.append)
    assert statuses(report) == {"rival-team": "new", "sim-team": "new"}
    assert [result.name for result in heard] == list(TEAMS)  # in name order, as they finish
    folder = tmp_path / "packages"
    assert listing(folder) == [MANIFEST_NAME, "rival-team.enc", "sim-team.enc"]
    for team in TEAMS:
        assert (folder / f"{team}.enc").read_bytes() == served(sim, team)
    assert not report.failed and report.counts()["new"] == 2


def test_a_second_run_with_nothing_new_sends_one_request(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    sync_packages(client, tmp_path)
    mark = len(sim.requests)
    again = sync_packages(client, tmp_path)
    assert statuses(again) == {"rival-team": "unchanged", "sim-team": "unchanged"}
    assert requests_since(sim, mark) == [("/api/package/", 200)]


def test_without_refresh_a_republished_package_is_not_asked_for(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    """The trade-off of one request per run: the manifest is trusted until --refresh."""
    sync_packages(client, tmp_path)
    sim.engine.republish_package("rival-team")
    assert statuses(sync_packages(client, tmp_path))["rival-team"] == "unchanged"
    refreshed = sync_packages(client, tmp_path, refresh=True)
    assert statuses(refreshed) == {"rival-team": "changed", "sim-team": "unchanged"}
    assert (tmp_path / "rival-team.enc").read_bytes() == served(sim, "rival-team")
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["packages"]["rival-team"]["sha256"] == refreshed.results[0].sha256


def test_refresh_with_etags_is_a_conditional_request(tmp_path: Path) -> None:
    sim = start("downloads: {etags: true}")
    try:
        with EctfClient(sim.url, sim.token, retries=0) as client:
            sync_packages(client, tmp_path)
            before = (tmp_path / "sim-team.enc").stat().st_ino
            mark = len(sim.requests)
            report = sync_packages(client, tmp_path, refresh=True)
            assert statuses(report) == {"rival-team": "unchanged", "sim-team": "unchanged"}
            assert sorted(requests_since(sim, mark)) == [
                ("/api/package/", 200),
                ("/api/package/rival-team/", 304),
                ("/api/package/sim-team/", 304),
            ]
            assert (tmp_path / "sim-team.enc").stat().st_ino == before
            sim.engine.republish_package("sim-team")
            changed = sync_packages(client, tmp_path, refresh=True)
            assert statuses(changed)["sim-team"] == "changed"
    finally:
        sim.stop()


def test_refresh_without_etags_compares_the_bytes_and_keeps_the_file(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    sync_packages(client, tmp_path)
    before = {team: (tmp_path / f"{team}.enc").stat().st_ino for team in TEAMS}
    mark = len(sim.requests)
    report = sync_packages(client, tmp_path, refresh=True)
    assert statuses(report) == {"rival-team": "unchanged", "sim-team": "unchanged"}
    assert [status for _, status in requests_since(sim, mark)] == [200, 200, 200]
    assert {team: (tmp_path / f"{team}.enc").stat().st_ino for team in TEAMS} == before
    assert listing(tmp_path) == [MANIFEST_NAME, "rival-team.enc", "sim-team.enc"]


def test_a_missing_or_resized_file_is_fetched_again(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    sync_packages(client, tmp_path)
    (tmp_path / "rival-team.enc").unlink()
    (tmp_path / "sim-team.enc").write_bytes(b"damaged")
    report = sync_packages(client, tmp_path)
    assert statuses(report) == {"rival-team": "new", "sim-team": "changed"}
    assert (tmp_path / "sim-team.enc").read_bytes() == served(sim, "sim-team")


@pytest.mark.parametrize("damage", ["lost", "not JSON", "not a manifest"])
def test_without_a_manifest_the_files_there_are_compared(
    sim: Simulator, client: EctfClient, tmp_path: Path, damage: str
) -> None:
    sync_packages(client, tmp_path)
    manifest = tmp_path / MANIFEST_NAME
    if damage == "lost":
        manifest.unlink()
    else:
        manifest.write_text("{not json" if damage == "not JSON" else "[1, 2]")
    inode = (tmp_path / "rival-team.enc").stat().st_ino
    report = sync_packages(client, tmp_path)
    assert statuses(report) == {"rival-team": "unchanged", "sim-team": "unchanged"}
    assert (tmp_path / "rival-team.enc").stat().st_ino == inode
    assert len(report.notes) == (0 if damage == "lost" else 1)
    assert json.loads(manifest.read_text())["packages"].keys() == set(TEAMS)


# -- decryption --------------------------------------------------------------------------


def test_keys_decrypt_what_they_can_and_keep_the_enc(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    keys = {"rival-team": sim.engine.package_key("rival-team"), "sim-team": "a wrong key"}
    report = sync_packages(client, tmp_path, keys=keys)
    rival, ours = report.results
    assert (rival.status, rival.decrypted, rival.error) == ("new", "rival-team.zip", "")
    assert ours.status == "new" and not ours.decrypted
    assert ours.error.startswith("not decrypted: cannot decrypt sim-team.enc: wrong key")
    assert report.failed and report.counts() == {
        "new": 2,
        "changed": 0,
        "unchanged": 0,
        "decrypted": 1,
        "failed": 1,
    }
    assert listing(tmp_path) == [MANIFEST_NAME, "rival-team.enc", "rival-team.zip", "sim-team.enc"]
    with zipfile.ZipFile(tmp_path / "rival-team.zip") as archive:
        assert archive.namelist() == ["hsm.bin", "README.txt"]

    again = sync_packages(client, tmp_path, keys=keys)
    assert [r.decrypted for r in again.results] == ["", ""]  # already decrypted
    sim.engine.republish_package("rival-team")
    changed = sync_packages(client, tmp_path, keys=keys, refresh=True)
    assert (changed.results[0].status, changed.results[0].decrypted) == (
        "changed",
        "rival-team.zip",
    )


def test_a_key_that_arrives_later_decrypts_the_package_already_there(
    sim: Simulator, client: EctfClient, tmp_path: Path
) -> None:
    sync_packages(client, tmp_path)
    mark = len(sim.requests)
    later = sync_packages(client, tmp_path, keys={"sim-team": sim.engine.package_key("sim-team")})
    assert [(r.status, r.decrypted) for r in later.results] == [
        ("unchanged", ""),
        ("unchanged", "sim-team.zip"),
    ]
    assert requests_since(sim, mark) == [("/api/package/", 200)]


def test_a_key_for_a_team_without_a_package_is_a_note(client: EctfClient, tmp_path: Path) -> None:
    report = sync_packages(client, tmp_path, keys={"nobody": "k"})
    assert report.notes == ["no package named 'nobody' on the server: its key was not used"]
    assert not report.failed


# -- trouble -----------------------------------------------------------------------------


def test_a_download_that_breaks_off_leaves_nothing_behind(tmp_path: Path) -> None:
    sim = start("faults: [{kind: truncate, path: '^/api/package/rival-team/$'}]")
    try:
        with EctfClient(sim.url, sim.token, retries=1, sleep=lambda _: None) as client:
            report = sync_packages(client, tmp_path)
    finally:
        sim.stop()
    rival, ours = report.results
    assert rival.status == "failed" and "broke off" in rival.error
    assert ours.status == "new" and report.failed
    assert listing(tmp_path) == [MANIFEST_NAME, "sim-team.enc"]
    assert "rival-team" not in json.loads((tmp_path / MANIFEST_NAME).read_text())["packages"]


def test_the_list_refused_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    sim = start("teams: [{name: solo, token: solo-token}]")
    try:
        with EctfClient(sim.url, sim.token, retries=0) as client, pytest.raises(Forbidden):
            sync_packages(client, tmp_path / "packages")
    finally:
        sim.stop()
    assert listing(tmp_path / "packages") == []


class FakeSource:
    """Packages from memory; with *together*, each download waits until that many
    downloads are under way at once (a barrier), which only a parallel sync passes."""

    def __init__(self, names: list[str], together: int = 0) -> None:
        self.names = names
        self.asked: list[str] = []
        self._barrier = threading.Barrier(together, timeout=10) if together else None

    def list_packages(self) -> list[str]:
        return list(self.names)

    def download_package_if_changed(
        self,
        name: str,
        dest: Path,
        *,
        etag: str = "",
        last_modified: str = "",
        cancel: threading.Event | None = None,
    ) -> Download:
        self.asked.append(name)
        if self._barrier is not None:
            self._barrier.wait()
        body = f"package of {name}".encode()
        dest.write_bytes(body)
        return Download(dest, len(body), "application/octet-stream")


def test_names_from_the_server_never_leave_the_folder(tmp_path: Path) -> None:
    hostile = ["../escape", ".hidden", "a/b", "a\\b", "..", "x" * 200, "ok\n", "", "ok"]
    folder = tmp_path / "packages"
    source = FakeSource([*hostile, "ok"])
    report = sync_packages(source, folder)
    assert source.asked == ["ok"]
    assert listing(tmp_path) == ["packages"]
    assert listing(folder) == [MANIFEST_NAME, "ok.enc"]
    refused = [r for r in report.results if r.status == "failed"]
    assert len(refused) == len(hostile) - 1  # "ok" listed twice is one package
    assert {r.error for r in refused} == {"not a plain name; nothing saved"}


def test_downloads_run_in_parallel(tmp_path: Path) -> None:
    source = FakeSource(["a", "b", "c"], together=3)
    report = sync_packages(source, tmp_path, workers=3)
    assert statuses(report) == {"a": "new", "b": "new", "c": "new"}


def test_an_interrupted_sync_downloads_nothing_more(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    source = FakeSource(["a", "b"])
    report = sync_packages(source, tmp_path, cancel=cancel)
    assert report.interrupted and source.asked == []
    assert [r.error for r in report.results] == ["interrupted", "interrupted"]
    assert listing(tmp_path) == [MANIFEST_NAME]
