"""`run_simulate`, the entry of `ectf-action simulate`: URL first, stop on an event or a signal."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
import requests

from ectf_action.errors import InvalidInput
from ectf_action.simulator import run_simulate


class Output(io.StringIO):
    """A stdout that says when its first line has been written."""

    def __init__(self) -> None:
        super().__init__()
        self.first_line = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "\n" in self.getvalue():
            self.first_line.set()
        return written

    @property
    def url(self) -> str:
        return self.getvalue().splitlines()[0]


def run_in_thread(
    output: Output, stop: threading.Event, **kwargs: object
) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    arguments: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "token": None,
        "scenario_path": None,
    }
    arguments.update(kwargs)

    def target() -> None:
        result.append(run_simulate(stdout=output, stop=stop, **arguments))  # type: ignore[arg-type]

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert output.first_line.wait(5)
    return thread, result


def test_serves_until_stopped_with_the_url_first() -> None:
    output, stop = Output(), threading.Event()
    thread, result = run_in_thread(output, stop, token="cli-token")
    assert output.url.startswith("http://127.0.0.1:")
    url = output.url
    good = requests.get(
        f"{url}/api/flow/test/", headers={"Authorization": "Bearer cli-token"}, timeout=5
    )
    assert good.status_code == 200 and good.json() == []
    old = requests.get(
        f"{url}/api/flow/test/", headers={"Authorization": "Bearer sim-token"}, timeout=5
    )
    assert old.status_code == 401
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and result == [0]
    text = output.getvalue()
    assert "GET /api/flow/test/ -> 200 team=sim-team" in text
    assert "cli-token" not in text
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/flow/test/", timeout=2)


def test_a_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("teams:\n  - {name: solo, token: solo-token}\n")
    output, stop = Output(), threading.Event()
    thread, result = run_in_thread(output, stop, scenario_path=str(path))
    reply = requests.get(
        f"{output.url}/api/package/", headers={"Authorization": "Bearer solo-token"}, timeout=5
    )
    assert reply.status_code == 403  # solo is not in the attack phase
    stop.set()
    thread.join(5)
    assert result == [0]


def test_a_bad_scenario_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("time_scale: soon\n")
    with pytest.raises(InvalidInput) as error:
        run_simulate("127.0.0.1", 0, None, str(path), io.StringIO(), threading.Event())
    assert error.value.name == "scenario" and "time_scale" in str(error.value)
    with pytest.raises(InvalidInput, match="cannot read"):
        run_simulate("127.0.0.1", 0, None, str(tmp_path / "no.yaml"), io.StringIO())


def test_a_taken_port_is_invalid_input() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput) as error:
            run_simulate("127.0.0.1", port, None, None, io.StringIO(), threading.Event())
    assert error.value.name == "port"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_from_the_main_thread(signum: signal.Signals) -> None:
    before = signal.getsignal(signum)
    output = Output()

    def send_signal() -> None:
        if output.first_line.wait(5):
            os.kill(os.getpid(), signum)

    sender = threading.Thread(target=send_signal, daemon=True)
    sender.start()
    assert run_simulate("127.0.0.1", 0, None, None, output) == 0
    sender.join(5)
    assert output.url.startswith("http://127.0.0.1:")
    assert signal.getsignal(signum) is before  # the previous handler is back
