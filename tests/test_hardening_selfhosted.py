"""Self-hosted runners: a proxy, a private CA, a workspace that belongs to the runner's
user while the container runs as root, and executables among the artifacts.

Through the real entry point (`python -m ectf_action run`) against the scripted server,
over plain HTTP through a recording proxy, and over HTTPS with a certificate made by the
real `openssl` (skipped where it is missing). The ownership tests need root (the
container's user) and skip elsewhere.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PUSH_SHA, ActionEnv, Completed, SecretScanner, distinctive_token
from hardening_support import (
    FakeServer,
    Reply,
    Request,
    ScriptedApi,
    assert_no_leak,
    flow_doc,
)

pytestmark = pytest.mark.e2e

WORKSPACE_OWNER = (1234, 1234)


def finished_flow(token: str, artifacts: dict[str, bytes | Reply] | None = None) -> ScriptedApi:
    names = list(artifacts or {})
    return ScriptedApi(
        token,
        [flow_doc({"build": "running"}), flow_doc({"build": "succeeded"}, artifacts=names)],
        artifacts,
    )


def run_checked(environment: ActionEnv, *args: str) -> Completed:
    done = environment.run(*args, timeout=60)
    assert environment.scanner is not None
    assert_no_leak(environment.scanner, environment.root, environment.token)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# -- a proxy --------------------------------------------------------------------------------


def test_the_proxy_variables_are_still_honoured(tmp_path: Path) -> None:
    """HTTP_PROXY points at a recording proxy, the API at a host that does not resolve:
    every request goes through the proxy, Bearer token and all (`.netrc` is never read,
    but the environment's proxy settings still are)."""
    token = distinctive_token()
    api = finished_flow(token)
    proxied: list[Request] = []

    def proxy(request: Request) -> Reply:
        """Takes absolute-form requests (a proxy's) for the unresolvable host, and answers
        them as that host would."""
        proxied.append(request)
        origin = "http://ectf-api.invalid"
        if not request.path.startswith(origin + "/"):
            return Reply(502, b"not for this proxy", "text/plain")
        return api(Request(request.method, request.path[len(origin) :], request.query,
                           request.headers, request.body))  # fmt: skip

    with FakeServer(proxy) as server:
        environment = ActionEnv(tmp_path, token, "http://ectf-api.invalid", SecretScanner())
        environment.env.update(HTTP_PROXY=server.url, NO_PROXY="")
        done = run_checked(environment)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(proxied) >= 3, [r.path for r in proxied]
    assert all(r.path.startswith("http://ectf-api.invalid/api/flow/test/") for r in proxied)
    assert {r.headers.get("Authorization") for r in proxied} == {f"Bearer {token}"}


# -- a private CA -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its SAN), made by the real openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test a private CA with")
    folder = tmp_path_factory.mktemp("ca")
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=ectf-test-ca", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_server(certificate: tuple[Path, Path]) -> Iterator[tuple[FakeServer, str]]:
    import ssl

    token = distinctive_token()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with FakeServer(finished_flow(token), tls=context) as server:
        yield server, token


def test_a_server_signed_by_a_private_ca_is_refused_without_its_bundle(
    tmp_path: Path, https_server: tuple[FakeServer, str]
) -> None:
    """A clear TLS error at once (exit 3), naming the variables that fix it: a certificate
    that did not verify will not verify on a retry (six of them took half a minute)."""
    server, token = https_server
    environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
    started = time.monotonic()
    done = run_checked(environment)
    seconds = time.monotonic() - started
    assert done.returncode == 3, done.stdout + done.stderr
    (error,) = done.commands("error")
    assert "certificate verify failed" in error and "SSL_CERT_FILE" in error, error
    assert seconds < 10, f"the run took {seconds:.1f} s"
    assert [line for line in done.stdout.splitlines() if "trying again" in line] == []


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_a_server_signed_by_a_private_ca_is_trusted_through_its_bundle(
    tmp_path: Path,
    https_server: tuple[FakeServer, str],
    certificate: tuple[Path, Path],
    variable: str,
) -> None:
    server, token = https_server
    assert server.url.startswith("https://127.0.0.1:")
    environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
    environment.env[variable] = str(certificate[0])
    done = run_checked(environment)
    assert done.returncode == 0, done.stdout + done.stderr
    assert environment.outputs()["status"] == "succeeded"


def test_a_ca_bundle_that_does_not_exist_is_an_input_error(
    tmp_path: Path, https_server: tuple[FakeServer, str]
) -> None:
    server, token = https_server
    environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
    environment.env["SSL_CERT_FILE"] = str(tmp_path / "missing.pem")
    done = run_checked(environment)
    assert done.returncode == 2, done.stdout + done.stderr
    (error,) = done.commands("error")
    assert "SSL_CERT_FILE" in error and "missing.pem" in error, error
    assert server.records == []


# -- file modes and owners ------------------------------------------------------------------


def entry(name: str, mode: int) -> zipfile.ZipInfo:
    """A zip entry made on Unix with *mode* (type and permission bits)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


MODES: dict[str, tuple[int, int]] = {  # entry -> (mode in the zip, mode extracted)
    "build.log": (0o100644, 0o644),
    "bin/flash-tool": (0o100755, 0o755),
    "bin/setuid-everyone": (0o106777, 0o755),
    "bin/setgid-tool": (0o102750, 0o755),
    "world-writable.txt": (0o100666, 0o644),
    "sticky.txt": (0o101644, 0o644),
}


def artifacts_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (mode, _) in MODES.items():
            archive.writestr(entry(name, mode), f"{name}\n")
        archive.writestr(entry("shared/", 0o041777), b"")  # a sticky, world-writable folder
    return buffer.getvalue()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The runner's umask (022), inherited by the action's process."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_an_extracted_file_keeps_only_its_owner_executable_bit(
    tmp_path: Path, usual_umask: None
) -> None:
    """A file the zip marks executable by its owner is 0755 (a tool the build made); one
    marked setuid, setgid, sticky or world-writable never keeps those bits."""
    token = distinctive_token()
    with FakeServer(finished_flow(token, {"build": artifacts_zip()})) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = environment.workspace / "ectf-artifacts" / "build"
    modes = {name: stat.S_IMODE(os.lstat(folder / name).st_mode) for name in MODES}
    assert modes == {name: extracted for name, (_, extracted) in MODES.items()}
    assert stat.S_IMODE(os.lstat(folder / "shared").st_mode) == 0o755


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="handing files to the workspace's owner needs root (the action's container user)",
)


def owners(root: Path) -> dict[str, tuple[int, int]]:
    """(uid, gid) of *root* and of everything under it, links not followed."""
    found = {".": (os.lstat(root).st_uid, os.lstat(root).st_gid)}
    for path in root.rglob("*"):
        info = os.lstat(path)
        found[path.relative_to(root).as_posix()] = (info.st_uid, info.st_gid)
    return found


@needs_root
def test_what_the_step_makes_in_the_workspace_belongs_to_the_workspace_owner(
    tmp_path: Path,
) -> None:
    """The workspace belongs to uid 1234 (the runner's user), the step runs as root: the
    artifacts tree, the JUnit file and the folders made for it end up 1234's. A file of
    the checkout, the runner's files outside the workspace and the target of a link in
    the artifacts folder are not touched, the link not followed."""
    token = distinctive_token()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the step's")
    with FakeServer(finished_flow(token, {"build": artifacts_zip()})) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        workspace = environment.workspace
        checkout = workspace / "README.md"
        checkout.write_text("the team's checkout, root's here")
        artifacts = workspace / "ectf-artifacts"
        artifacts.mkdir()
        (artifacts / "elsewhere").symlink_to(outside, target_is_directory=True)
        os.chown(workspace, *WORKSPACE_OWNER)
        environment.set_inputs(**{"junit-path": "reports/junit/ectf-junit.xml"})
        done = run_checked(environment)
    assert done.returncode == 0, done.stdout + done.stderr
    made = {
        **owners(artifacts),
        **{f"reports/{k}": v for k, v in owners(workspace / "reports").items()},
    }
    assert "build/bin/flash-tool" in made and "reports/junit/ectf-junit.xml" in made, made
    assert {path: owner for path, owner in made.items() if owner != WORKSPACE_OWNER} == {}
    assert owners(outside) == {".": (0, 0), "keep.txt": (0, 0)}
    assert (os.lstat(checkout).st_uid, os.lstat(checkout).st_gid) == (0, 0)
    assert {owner for owner in owners(environment.file_commands).values()} == {(0, 0)}
    assert not done.commands("warning"), done.stdout


@needs_root
def test_nothing_is_handed_over_when_the_workspace_is_ours(tmp_path: Path) -> None:
    """GitHub's hosted runners: the workspace is root's too, and nothing changes owner."""
    token = distinctive_token()
    with FakeServer(finished_flow(token, {"build": artifacts_zip()})) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(owners(environment.workspace).values()) == {(0, 0)}


@needs_root
def test_at_a_shell_an_artifacts_folder_outside_the_working_folder_is_left_alone(
    tmp_path: Path,
) -> None:
    """`sudo ectf-action run` in a folder another user owns, the artifacts written
    elsewhere: the run ends by its result (it once ended in a traceback, exit 1, after
    the flow succeeded), the JUnit file in the folder is handed to its owner, the
    artifacts outside it stay root's."""
    token = distinctive_token()
    working = tmp_path / "checkout"
    working.mkdir()
    os.chown(working, *WORKSPACE_OWNER)
    elsewhere = tmp_path / "elsewhere"
    with FakeServer(finished_flow(token, {"build": artifacts_zip()})) as server:
        done = subprocess.run(
            [sys.executable, "-m", "ectf_action", "run", "--token", token,
             "--api-url", server.url, "--commit", PUSH_SHA, "--poll-interval", "0.05",
             "--git-url", "ssh://git@github.com/sim-team/design.git",
             "--artifacts-path", str(elsewhere)],
            cwd=working, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                              "HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    junit = working / "ectf-junit.xml"
    assert (os.lstat(junit).st_uid, os.lstat(junit).st_gid) == WORKSPACE_OWNER
    assert (elsewhere / "build" / "bin" / "flash-tool").is_file()
    assert set(owners(elsewhere).values()) == {(0, 0)}
