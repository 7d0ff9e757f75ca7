"""The simulator serves attack packages as the organizers publish them: encrypted so
that their openssl command decrypts them, each team with its own key; and, when the
scenario asks, with an ETag that a conditional request is answered 304 for."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from collections.abc import Iterator

import pytest
import requests

from ectf_action.simulator import ScenarioError, Simulator, load_scenario

SCENARIO = """
downloads: {etags: true}
teams:
  - {name: sim-team, token: sim-token, attack_phase: true}
  - name: rival-team
    token: rival-token
    attack_phase: true
    package_key: "rival's posted key"
    package: {artifacts: [{name: design/hsm.bin, kind: random, size: 5000}]}
"""


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(load_scenario(SCENARIO)) as simulator:
        yield simulator


def get(sim: Simulator, name: str, **headers: str) -> requests.Response:
    return requests.get(
        f"{sim.url}/api/package/{name}/",
        headers={"Authorization": f"Bearer {sim.token}", **headers},
        timeout=10,
    )


def test_openssl_decrypts_a_package_with_its_teams_key(sim: Simulator) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    served = get(sim, "rival-team")
    assert served.status_code == 200 and served.content.startswith(b"Salted__")
    command = [openssl, "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-salt", "-k"]
    plain = subprocess.run(
        [*command, "rival's posted key"], input=served.content, capture_output=True, check=True
    ).stdout
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        assert archive.namelist() == ["design/hsm.bin"]
        assert len(archive.read("design/hsm.bin")) == 5000
    wrong = subprocess.run(
        [*command, sim.engine.package_key("sim-team")], input=served.content, capture_output=True
    )
    assert wrong.returncode != 0  # every team's package has a key of its own


def test_keys_are_the_scenarios_or_derived_from_the_secret(sim: Simulator) -> None:
    assert sim.engine.package_key("rival-team") == "rival's posted key"
    derived = sim.engine.package_key("sim-team")
    assert len(derived) == 32
    with Simulator(load_scenario("secret: another secret")) as other:
        assert other.engine.package_key("sim-team") != derived


def test_the_same_scenario_serves_the_same_bytes() -> None:
    with Simulator(load_scenario(SCENARIO)) as one, Simulator(load_scenario(SCENARIO)) as two:
        assert get(one, "sim-team").content == get(two, "sim-team").content


def test_an_etag_and_304_for_a_matching_if_none_match(sim: Simulator) -> None:
    first = get(sim, "sim-team")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = get(sim, "sim-team", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    for listed in (f'"other", W/{etag}', "*"):
        assert get(sim, "sim-team", **{"If-None-Match": listed}).status_code == 304
    assert get(sim, "sim-team", **{"If-None-Match": '"stale"'}).content == first.content


def test_a_republished_package_has_new_bytes_and_a_new_etag(sim: Simulator) -> None:
    first = get(sim, "rival-team")
    sim.engine.republish_package("rival-team")
    second = get(sim, "rival-team", **{"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200
    assert second.content != first.content and second.headers["ETag"] != first.headers["ETag"]
    assert second.content[8:16] != first.content[8:16]  # a new salt


def test_without_etags_no_etag_and_no_304() -> None:
    with Simulator(load_scenario("")) as sim:
        first = get(sim, "sim-team")
        assert "ETag" not in first.headers
        assert get(sim, "sim-team", **{"If-None-Match": "*"}).status_code == 200


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("downloads: {etags: 1}", "downloads.etags: expected true or false"),
        (
            "teams: [{name: a, token: t, attack_phase: true, package_key: ''}]",
            r"teams\[0\].package_key: must not be empty",
        ),
        (
            "teams: [{name: a, token: t, attack_phase: true, package_key: [x]}]",
            r"teams\[0\].package_key: expected a string",
        ),
    ],
)
def test_bad_package_keys_name_the_key(text: str, problem: str) -> None:
    with pytest.raises(ScenarioError, match=problem):
        load_scenario(text)
