"""Everything that can go wrong, each with a message that says what to do.

A failed eCTF job is a result, not an exception: these are for the tool's own trouble.
Every class carries the exit code `run` and the CLI use for it (see the contract).
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_SERVER = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class EctfError(Exception):
    """Base of the package's errors; `str()` is a complete, user-facing sentence."""

    exit_code: ClassVar[int] = EXIT_SERVER
    title: ClassVar[str] = "eCTF error"


class InvalidInput(EctfError):
    """A local value (flag, input, file) is wrong; found before anything is sent."""

    exit_code = EXIT_INVALID_INPUT
    title = "Invalid input"

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


class ProtocolError(EctfError):
    """The server answered with something we cannot understand."""

    title = "Unexpected response"

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message}. The testing server's reply did not have the documented shape; "
            "retry later, and report it to the organizers if it persists."
        )


class TransportError(EctfError):
    """The server could not be reached (after retries) or timed out."""

    title = "Server unreachable"


class DownloadError(EctfError):
    """A download ended incomplete or damaged."""

    title = "Download failed"


class ApiError(EctfError):
    """The server answered with an error status."""

    status: ClassVar[int | None] = None
    title = "Server error"
    advice: ClassVar[str] = "Retry later; if it persists, contact the organizers."

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int,
        detail: Any = None,
        *,
        advice: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status_code = status_code
        self.detail = detail
        self.advice_text = advice if advice is not None else self.advice
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.method} {self.url} -> {self.status_code}"
        detail = format_detail(self.detail)
        if detail:
            text += f": {detail}"
        return f"{text}. {self.advice_text}".strip()


class BadRequest(ApiError):
    status = 400
    title = "Request refused"
    advice = "The server refused this action in the flow's or job's current state."


class Unauthorized(ApiError):
    status = 401
    title = "Token rejected"
    advice = (
        "The token was rejected: check that it is your team's current token "
        "(the `token` input / ECTF_TOKEN / ~/.ectf-config)."
    )


class Forbidden(ApiError):
    status = 403
    title = "Not in the attack phase"
    advice = "This endpoint is only open to teams in the attack phase."


class NotFound(ApiError):
    status = 404
    title = "Not found"
    advice = "Check the id or name: the server does not know it."


class Conflict(ApiError):
    status = 409
    title = "Flow already active"
    advice = (
        "This team already has a flow of this type queued or running; wait for it to "
        "end or cancel it."
    )

    def __init__(self, *args: Any, active_flow_id: str | None = None, **kwargs: Any) -> None:
        self.active_flow_id = active_flow_id
        super().__init__(*args, **kwargs)

    def _message(self) -> str:
        base = super()._message()
        if self.active_flow_id:
            base += f" Active flow: {self.active_flow_id}."
        return base


class PayloadTooLarge(ApiError):
    status = 413
    title = "Upload too large"
    advice = "The file is over the server's size limit; upload a smaller file."


class ValidationFailed(ApiError):
    status = 422
    title = "Request rejected as invalid"
    advice = "Fix the named field and try again."


class RateLimited(ApiError):
    status = 429
    title = "Rate limited"
    advice = "The server is rate limiting; wait and retry."


class ServerError(ApiError):
    status = 500
    title = "Server trouble"
    advice = "The testing server had trouble (often an outage); retry later."


ERROR_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        ServerError,
    )
    if cls.status is not None
}


def error_class_for(status_code: int) -> type[ApiError]:
    if status_code in ERROR_BY_STATUS:
        return ERROR_BY_STATUS[status_code]
    return ServerError if status_code >= 500 else ApiError


def format_detail(detail: Any) -> str:
    """Render a FastAPI `detail` (a string, or a list of validation errors) in one line."""
    if detail is None or detail == "":
        return ""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body") or "body"
                parts.append(f"{loc}: {item.get('msg', 'invalid')}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    text = str(detail)
    return text if len(text) <= 500 else text[:500] + "..."


class StateNotSaved(EctfError):
    """The step's state (the flow id the post step needs) could not be written."""

    title = "State not saved"


class Cancelled(EctfError):
    """The operation stopped because a cancel was requested (a signal, a timeout)."""

    title = "Cancelled"


class RunAborted(BaseException):
    """A second signal: stop now. A BaseException, so that no handler meant for errors
    catches it; the run ends as interrupted, after the cancel request on its way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def unexpected_problem(exc: BaseException) -> str:
    """The message for a failure nobody foresaw: what it was, and what to do."""
    return (
        f"ectf-action met an unexpected problem ({type(exc).__name__}: {exc}). Run the "
        "workflow again, and report this at https://github.com/ectf-action/ectf-action/issues "
        "with the step's log."
    )
