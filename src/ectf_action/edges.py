"""The process's edges, as every entry point gets them: `run`, the post step and the
command line build these once, at the outside, and pass them down.

- `Environment`: the environment variables, read in one place. It knows how the GitHub
  runner passes a container action its inputs (`INPUT_` + the name upper-cased, spaces
  to `_`, hyphens kept: `INPUT_API-URL`; the underscore spelling is accepted too, for
  people who set the variables by hand), where the runner's file-command files are,
  and where the home folder is. `Inputs` adds the command-line flags, which win.
- `Interrupts`: SIGINT and SIGTERM as a cancel event. A first signal only sets the event
  and is remembered, so that the run (which checks the event wherever it waits) cancels
  the remote flow and writes its reports instead of dying mid-request.
- `ClientFactory`: how an entry point makes its HTTP client, injected so tests can pass
  their own.

Kept light at import time (no HTTP library, not even pathlib, which brings urllib.parse):
`--help` start-up is benchmarked.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING

from .errors import EXIT_SIGINT, EXIT_SIGTERM, RunAborted

if TYPE_CHECKING:
    from pathlib import Path

    from .client import EctfClient

# (api_url, token) -> a client; entry points default to `default_client`.
ClientFactory = Callable[[str, str], "EctfClient"]


# -- the environment -----------------------------------------------------------------------


def input_env_names(name: str) -> tuple[str, str]:
    """The runner's spelling (`INPUT_API-URL`) and the underscore one (`INPUT_API_URL`)."""
    upper = name.replace(" ", "_").upper()
    return f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"


class Environment(Mapping[str, str]):
    """A read-only view of the environment variables, with the lookups the package
    needs. A mapping, so code that only passes it on can treat it as one."""

    def __init__(self, variables: Mapping[str, str] | None = None) -> None:
        self._variables = dict(variables or {})

    @classmethod
    def of(cls, variables: Mapping[str, str]) -> Environment:
        """*variables* as an Environment (itself if it already is one)."""
        return variables if isinstance(variables, Environment) else cls(variables)

    def __getitem__(self, name: str) -> str:
        return self._variables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

    def value(self, name: str) -> str:
        """The variable, trimmed; "" when unset."""
        return self._variables.get(name, "").strip()

    @property
    def in_actions(self) -> bool:
        """Inside a GitHub Actions step (where the inputs and file commands exist)."""
        return self.value("GITHUB_ACTIONS").lower() == "true"

    def action_input(self, name: str) -> str | None:
        """An input as the runner passed it, trimmed: "" when given empty (the runner
        passes every input, with action.yml's defaults), None when absent or outside
        Actions."""
        if not self.in_actions:
            return None
        present: str | None = None
        for key in input_env_names(name):
            if key in self._variables:
                value = self._variables[key].strip()
                if value:
                    return value
                present = ""
        return present

    def raw_inputs(self, name: str) -> list[str]:
        """Every value given for input *name* under either spelling, untrimmed: what may
        hold a secret before any check has run."""
        return [self._variables.get(key, "") for key in input_env_names(name)]

    def file_command(self, name: str) -> Path | None:
        """The runner's file-command file (`GITHUB_OUTPUT`, `GITHUB_STATE`,
        `GITHUB_STEP_SUMMARY`); None outside Actions, where nothing is written there."""
        from pathlib import Path

        value = self.value(name) if self.in_actions else ""
        return Path(value) if value else None

    def home(self) -> Path:
        """Where `~/.ectf-config` lives: HOME (the runner sets it for a container),
        else the account's home, else a folder that does not exist (no config file)."""
        from pathlib import Path

        home = self.value("HOME")
        if home:
            return Path(home)
        try:
            return Path.home()
        except RuntimeError:  # no HOME and no passwd entry
            return Path("/nonexistent")


class Inputs:
    """The action's inputs: a flag when given (it wins), else, inside Actions, the
    `INPUT_*` variable. One reader for `run`, the post step and the command line."""

    def __init__(self, flags: Mapping[str, str | None], env: Environment) -> None:
        self._flags = flags
        self.env = env

    def raw(self, name: str) -> str | None:
        """The trimmed value, "" when given empty, None when not given at all."""
        flag = self._flags.get(name)
        if flag is not None:
            return flag.strip()
        return self.env.action_input(name)

    def source(self, name: str) -> str:
        """Where *name*'s value comes from, for messages: `--api-url` or `input api-url`."""
        return f"--{name}" if self._flags.get(name) is not None else f"input {name}"


# -- signals -------------------------------------------------------------------------------

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The signals that came while installed, and the cancel event they set.

    A first signal sets the event. A second one means "stop now" (the runner's SIGTERM
    after its SIGINT, a person pressing Ctrl-C twice): it raises RunAborted in the main
    thread, and the run ends at once, after the cancel request already on its way.

    RunAborted is raised once, and never while the reports are written (`finishing`):
    an exception raised wherever the main thread happens to be can land inside a lock's
    bookkeeping or between two writes of one record, so a burst of signals must not
    break the very ending it asks for. Later signals are only remembered.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._may_abort = True
        self._deaf_after = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.signum = signum
            self.event.set()
        elif self._may_abort:
            self._may_abort = False
            raise RunAborted(signum)

    def finishing(self) -> None:
        """The run has ended and only its reports are left to write, which takes moments:
        from now on a signal no longer interrupts anything. After an interrupted run the
        process only exits once the block is left, so signals stay ignored then (the
        default SIGINT handler would print a KeyboardInterrupt traceback mid-exit)."""
        self._may_abort = False
        self._deaf_after = self.event.is_set()

    @contextlib.contextmanager
    def installed(self, enabled: bool = True) -> Iterator[threading.Event]:
        """Handle the signals inside the block (only the main thread may install
        handlers; elsewhere, or when not *enabled*, the event is still given). Leaving
        it puts the previous handlers back, unless `finishing` found the run
        interrupted: then signals stay ignored while the process exits."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield self.event
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in HANDLED_SIGNALS}
        try:
            yield self.event
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_IGN if self._deaf_after else handler)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM: the shell's 128 + the signal's number."""
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


# -- HTTP clients --------------------------------------------------------------------------


def default_client(api_url: str, token: str) -> EctfClient:
    from .client import EctfClient

    return EctfClient(api_url, token)


def impatient_client(api_url: str, token: str) -> EctfClient:
    """Quick to give up: a post step of a cancelled run has little time."""
    from .client import EctfClient

    return EctfClient(api_url, token, timeout=(5.0, 15.0), retries=2, queue_attempts=2)


def client_with_timeout(read_timeout: float | None) -> ClientFactory:
    """Clients whose requests wait at most *read_timeout* seconds for a reply (the
    command line's --timeout); None keeps the default."""

    def make(api_url: str, token: str) -> EctfClient:
        from .client import DEFAULT_TIMEOUT, EctfClient

        connect, read = DEFAULT_TIMEOUT
        if read_timeout is not None:
            connect, read = min(connect, read_timeout), read_timeout
        return EctfClient(api_url, token, timeout=(connect, read))

    return make
