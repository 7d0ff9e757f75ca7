"""`packages sync`, `packages get --key` and `packages decrypt` from the command line,
against the simulator; golden files for the lines people read."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
import yaml

from conftest import assert_golden
from ectf_action.cli import build_parser
from ectf_action.client import EctfClient
from ectf_action.errors import ProtocolError
from ectf_action.simulator import Simulator, load_scenario
from test_cli import run, sim_env

GOLDEN = Path(__file__).parent / "golden" / "packages"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(load_scenario("")) as simulator:
        yield simulator


def keys_file(folder: Path, keys: dict[str, str]) -> Path:
    path = folder / "keys.json"
    path.write_text(json.dumps(keys))
    return path


def test_sync_prints_a_line_per_package_and_a_summary(sim: Simulator, tmp_path: Path) -> None:
    folder = tmp_path / "packages"
    keys = keys_file(
        tmp_path, {"rival-team": sim.engine.package_key("rival-team"), "sim-team": "x"}
    )
    first = run(
        ["packages", "sync", str(folder), "--keys", str(keys)], home=tmp_path, env=sim_env(sim)
    )
    assert first.code == 1, first.err  # one package could not be decrypted
    mark = len(sim.requests)
    second = run(["packages", "sync", str(folder)], home=tmp_path, env=sim_env(sim))
    assert second.code == 0, second.err
    assert [r.path for r in sim.requests[mark:]] == ["/api/package/"]
    text = (first.out + "\n" + second.out).replace(str(folder), "<DIR>")
    assert_golden(GOLDEN / "sync.txt", text)


def test_sync_json_is_one_document_and_the_lines_go_to_stderr(
    sim: Simulator, tmp_path: Path
) -> None:
    folder = tmp_path / "packages"
    done = run(["packages", "sync", str(folder), "--json"], home=tmp_path, env=sim_env(sim))
    assert done.code == 0
    document = json.loads(done.out)
    assert document["counts"] == {
        "new": 2,
        "changed": 0,
        "unchanged": 0,
        "decrypted": 0,
        "failed": 0,
    }
    assert [p["file"] for p in document["packages"]] == ["rival-team.enc", "sim-team.enc"]
    assert document["directory"] == str(folder) and document["interrupted"] is False
    assert done.err.splitlines()[0].startswith("new        rival-team: rival-team.enc (")


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (None, "--keys: cannot read"),
        ("rival-team: 0123\n", "the key of 'rival-team' must be a non-empty string (quote it"),
        ("[a, b]\n", "--keys: must be a mapping"),
    ],
)
def test_a_bad_keys_file_stops_before_any_request(
    sim: Simulator, tmp_path: Path, keys: str | None, problem: str
) -> None:
    path = tmp_path / "keys.yaml"
    if keys is not None:
        path.write_text(keys)
    done = run(
        ["packages", "sync", str(tmp_path / "p"), "--keys", str(path)],
        home=tmp_path,
        env=sim_env(sim),
    )
    assert done.code == 2 and problem in done.err
    assert sim.requests == []


def test_sync_outside_the_attack_phase_exits_3(tmp_path: Path) -> None:
    with Simulator(load_scenario("teams: [{name: solo, token: solo-token}]")) as sim:
        done = run(["packages", "sync", str(tmp_path / "p")], home=tmp_path, env=sim_env(sim))
    assert done.code == 3 and "attack phase" in done.err


def test_get_with_a_key_saves_the_package_and_its_zip(sim: Simulator, tmp_path: Path) -> None:
    key = sim.engine.package_key("rival-team")
    out = tmp_path / "out"
    done = run(
        ["packages", "get", "rival-team", "--key", key, "-o", f"{out}/"],
        home=tmp_path,
        env=sim_env(sim),
    )
    assert done.code == 0, done.err
    assert sorted(p.name for p in out.iterdir()) == ["rival-team.enc", "rival-team.zip"]
    assert (out / "rival-team.enc").read_bytes().startswith(b"Salted__")
    with zipfile.ZipFile(out / "rival-team.zip") as archive:
        assert "hsm.bin" in archive.namelist()
    assert done.out.startswith(f"Saved {out}/rival-team.enc (")
    assert done.out.splitlines()[1].startswith(f"Decrypted to {out}/rival-team.zip (")


def test_get_with_a_wrong_key_keeps_the_package_only(sim: Simulator, tmp_path: Path) -> None:
    done = run(
        ["packages", "get", "rival-team", "--key", "wrong", "-o", str(tmp_path / "r.zip")],
        home=tmp_path,
        env=sim_env(sim),
    )
    assert done.code == 2
    assert done.err == (
        "error: cannot decrypt r.enc: wrong key: the decrypted padding is invalid\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.enc"]


def test_decrypt_what_openssl_encrypted(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("hsm.bin", b"\x00\x01" * 1000)
    source = tmp_path / "mitre.enc"
    files = ["-in", str(plain), "-out", str(source)]
    command = [openssl, "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-k", "posted key", *files]
    subprocess.run(command, check=True)
    args = ["packages", "decrypt", str(source), "--key", "posted key"]
    done = run(args, home=tmp_path)
    assert done.code == 0, done.err
    assert (tmp_path / "mitre.zip").read_bytes() == plain.read_bytes()
    size = plain.stat().st_size
    assert done.out == f"Decrypted {source} to {tmp_path}/mitre.zip ({size:,} bytes).\n"
    again = run(args, home=tmp_path)
    assert again.code == 2 and "already exists; pass --force" in again.err
    assert run([*args, "--force", "--json"], home=tmp_path).code == 0
    wrong = run(["packages", "decrypt", str(source), "--key", "nope", "-o", "x.zip"], home=tmp_path)
    assert wrong.code == 2 and "wrong key" in wrong.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mitre.enc", "mitre.zip", "plain.zip"]


def test_decrypt_refuses_what_is_not_there(tmp_path: Path) -> None:
    done = run(["packages", "decrypt", str(tmp_path / "none.enc"), "--key", "k"], home=tmp_path)
    assert done.code == 2 and "is not a file" in done.err


# -- the client's conditional download ---------------------------------------------------

PACKAGE_URL = "https://api.example.test/api/package/mitre/"


@responses.activate
def test_the_client_sends_the_validators_and_keeps_what_the_server_sent(tmp_path: Path) -> None:
    stamp = "Tue, 01 Dec 2026 10:00:00 GMT"
    client = EctfClient("https://api.example.test", "tok", retries=0)
    responses.get(
        PACKAGE_URL,
        status=304,
        match=[
            responses.matchers.header_matcher({"If-None-Match": '"v1"', "If-Modified-Since": stamp})
        ],
    )
    dest = tmp_path / "mitre.enc"
    assert (
        client.download_package_if_changed("mitre", dest, etag='"v1"', last_modified=stamp) is None
    )
    assert not dest.exists()
    responses.replace(
        responses.GET,
        PACKAGE_URL,
        body=b"Salted__bytes",
        headers={"ETag": '"v2"', "Last-Modified": stamp},
    )
    got = client.download_package_if_changed("mitre", dest)
    assert got is not None and (got.etag, got.last_modified, got.size) == ('"v2"', stamp, 13)
    assert "If-None-Match" not in responses.calls[-1].request.headers
    assert dest.read_bytes() == b"Salted__bytes"


@responses.activate
def test_a_304_to_a_plain_request_is_a_protocol_error(tmp_path: Path) -> None:
    client = EctfClient("https://api.example.test", "tok", retries=0)
    responses.get(PACKAGE_URL, status=304)
    with pytest.raises(ProtocolError, match="answered 304 to a plain request"):
        client.download_package_if_changed("mitre", tmp_path / "mitre.enc")
    assert list(tmp_path.iterdir()) == []


# -- the example workflow ----------------------------------------------------------------

EXAMPLE = Path(__file__).parent.parent / "examples" / "workflows" / "attack-packages.yml"


def test_the_attack_packages_example_syncs_hourly_and_uploads_the_enc_files() -> None:
    workflow = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    minute, hour, *_ = triggers["schedule"][0]["cron"].split()
    assert minute.isdigit() and hour == "*" and "workflow_dispatch" in triggers
    steps = workflow["jobs"]["sync"]["steps"]
    uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
    assert "actions/checkout" not in uses  # the packages come from the API
    for name, step in uses.items():
        assert re.fullmatch(r"[0-9a-f]{40}", step["uses"].split("@")[1]), name
    assert uses["actions/cache/restore"]["with"]["path"] == "packages"
    assert uses["actions/cache/save"]["with"]["path"] == "packages"
    assert uses["actions/upload-artifact"]["with"]["path"] == "packages/*.enc"

    runs = {step["name"]: step for step in steps if "run" in step}
    install = runs["Install ectf-action"]["run"]
    assert re.search(r'"ectf-action\[packages\] @ git\+https://\S+@v\d+\.\d+\.\d+"', install)
    sync = runs["Download new and changed packages"]
    assert sync["env"] == {"ECTF_TOKEN": "${{ secrets.ECTF_TOKEN }}"}
    command = shlex.split(sync["run"])
    assert command[0] == "ectf-action"
    args = build_parser().parse_args(command[1:])  # a command this package has
    assert (args.handler.__name__, args.dir) == ("packages_sync", "packages/")
