"""Workflow commands: exact strings, as the runner parses them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from ectf_action.workflow import (
    SUMMARY_FILE_LIMIT,
    WorkflowCommands,
    escape_data,
    escape_property,
)


class FlushCountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def make(tmp_path: Path | None = None) -> tuple[WorkflowCommands, FlushCountingStream]:
    out = FlushCountingStream()
    if tmp_path is None:
        return WorkflowCommands(out, output_file=None, state_file=None, summary_file=None), out
    commands = WorkflowCommands(
        out,
        output_file=tmp_path / "output",
        state_file=tmp_path / "state",
        summary_file=tmp_path / "summary",
    )
    return commands, out


def read_file_commands(path: Path) -> dict[str, str]:
    """Parse a file-command file the way the runner does (delimiter form only)."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    index = 0
    while index < len(lines) and lines[index]:
        name, delimiter = lines[index].split("<<", 1)
        end = lines.index(delimiter, index + 1)
        values[name] = "\n".join(lines[index + 1 : end])
        index = end + 1
    return values


# -- escaping ---------------------------------------------------------------------------


def test_escape_data_order_and_double_escaping() -> None:
    assert escape_data("a%b\rc\nd") == "a%25b%0Dc%0Ad"
    assert escape_data("%25 %0A") == "%2525 %250A"
    assert escape_data("a:b,c") == "a:b,c"


def test_escape_property_also_escapes_separators() -> None:
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert escape_property("%3A %2C") == "%253A %252C"


# -- commands ---------------------------------------------------------------------------


def test_annotations_exact_strings() -> None:
    commands, out = make()
    commands.error("build failed\nsee log", title="Job build: failed")
    commands.warning("50% done")
    commands.notice("plain", title="a,b")
    assert out.getvalue().splitlines() == [
        "::error title=Job build%3A failed::build failed%0Asee log",
        "::warning::50%25 done",
        "::notice title=a%2Cb::plain",
    ]


def test_every_line_is_flushed() -> None:
    commands, out = make()
    commands.info("one")
    commands.error("two")
    commands.echo_untrusted("three\nfour")
    assert out.flushes == len(out.getvalue().splitlines())


def test_group_is_closed_even_when_the_body_raises() -> None:
    commands, out = make()
    with pytest.raises(RuntimeError), commands.group("build\nlog"):
        commands.info("inside")
        raise RuntimeError("boom")
    assert out.getvalue().splitlines() == ["::group::build%0Alog", "inside", "::endgroup::"]


def test_echo_untrusted_fences_commands_with_a_fresh_token() -> None:
    commands, out = make()
    hostile = "::error::pwned\n::add-mask::x\r::set-output name=a::b"
    commands.echo_untrusted(hostile)
    lines = out.getvalue().split("\n")
    start = re.fullmatch(r"::stop-commands::([0-9a-f]{32})", lines[0])
    assert start is not None
    token = start.group(1)
    assert lines[1:5] == [
        "::error::pwned",
        "::add-mask::x",
        "::set-output name=a::b",
        f"::{token}::",
    ]
    commands.echo_untrusted("again")
    second = out.getvalue().split("\n")[5]
    assert second.startswith("::stop-commands::")
    assert second != lines[0]


def test_echo_untrusted_never_uses_a_token_found_in_the_text() -> None:
    out = io.StringIO()
    tokens = iter(["aa" * 16, "bb" * 16])
    commands = WorkflowCommands(
        out,
        output_file=None,
        state_file=None,
        summary_file=None,
        stop_tokens=lambda: next(tokens),
    )
    commands.echo_untrusted("resume with ::" + "AA" * 16 + ":: please")
    lines = out.getvalue().splitlines()
    assert lines[0] == "::stop-commands::" + "bb" * 16
    assert lines[-1] == "::" + "bb" * 16 + "::"


def test_lone_carriage_return_cannot_hide_a_command() -> None:
    commands, out = make()
    commands.info("progress 10%\r::error::injected")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("::stop-commands::")
    assert "\r" not in out.getvalue()
    assert "::error::injected" in lines[1:-1]


@pytest.mark.parametrize("text", ["::warning::x", "   ::debug::x", "##[error]legacy", "a\n::x::"])
def test_info_fences_anything_that_parses_as_a_command(text: str) -> None:
    commands, out = make()
    commands.info(text)
    assert out.getvalue().startswith("::stop-commands::")


def test_info_leaves_plain_text_alone() -> None:
    commands, out = make()
    commands.info("Job build: running (12s)\nnext line")
    assert out.getvalue() == "Job build: running (12s)\nnext line\n"


def test_echo_untrusted_of_empty_text_prints_nothing() -> None:
    commands, out = make()
    commands.echo_untrusted("")
    assert out.getvalue() == ""


# -- masking ----------------------------------------------------------------------------


def test_add_mask_is_escaped_and_then_redacted_everywhere(tmp_path: Path) -> None:
    commands, out = make(tmp_path)
    secret = "s3cr%t-token"
    commands.add_mask(secret)
    commands.info(f"token is {secret}")
    commands.error(f"bad {secret}", title=secret)
    commands.echo_untrusted(f"log says {secret}")
    with commands.group(secret):
        pass
    commands.set_output("leak", secret)
    commands.save_state("leak", secret)
    commands.append_summary(f"# {secret}")
    text = out.getvalue()
    assert text.splitlines()[0] == "::add-mask::s3cr%25t-token"
    assert text.count(secret) == 0
    assert text.count("***") == 5
    for name in ("output", "state", "summary"):
        content = (tmp_path / name).read_text(encoding="utf-8")
        assert secret not in content
        assert "***" in content


def test_multiline_secret_lines_are_masked_each() -> None:
    commands, out = make()
    commands.add_mask("first-line\nsecond-line")
    commands.info("only second-line here")
    assert out.getvalue().splitlines() == [
        "::add-mask::first-line%0Asecond-line",
        "only *** here",
    ]


def test_blank_masks_are_ignored() -> None:
    commands, out = make()
    commands.add_mask("")
    commands.add_mask("  ")
    commands.info("a b")
    assert out.getvalue() == "a b\n"


def test_a_value_is_masked_once() -> None:
    commands, out = make()
    commands.add_mask("s3cret-value")
    commands.add_mask("s3cret-value")
    assert out.getvalue() == "::add-mask::s3cret-value\n"


# -- file commands ----------------------------------------------------------------------


def test_outputs_use_the_delimiter_form_and_append(tmp_path: Path) -> None:
    commands, _ = make(tmp_path)
    (tmp_path / "output").write_text("earlier<<EOF\nx\nEOF\n", encoding="utf-8")
    commands.set_output("status", "failed")
    commands.set_output("jobs", '[{"name": "a\\nb"}]\nsecond line')
    text = (tmp_path / "output").read_text(encoding="utf-8")
    assert text.startswith("earlier<<EOF\nx\nEOF\n")
    assert re.search(r"^status<<ghadelimiter_[0-9a-f-]{36}\nfailed\nghadelimiter_", text, re.M)
    values = read_file_commands(tmp_path / "output")
    assert values == {
        "earlier": "x",
        "status": "failed",
        "jobs": '[{"name": "a\\nb"}]\nsecond line',
    }


def test_a_value_holding_the_delimiter_gets_another(tmp_path: Path) -> None:
    delimiters = iter(["ghadelimiter_1", "ghadelimiter_2"])
    commands = WorkflowCommands(
        io.StringIO(),
        output_file=None,
        state_file=tmp_path / "state",
        summary_file=None,
        delimiters=lambda: next(delimiters),
    )
    commands.save_state("flow_id", "x\nghadelimiter_1\ny")
    text = (tmp_path / "state").read_text(encoding="utf-8")
    assert text == "flow_id<<ghadelimiter_2\nx\nghadelimiter_1\ny\nghadelimiter_2\n"
    assert read_file_commands(tmp_path / "state") == {"flow_id": "x\nghadelimiter_1\ny"}


@pytest.mark.parametrize("name", ["", "a\nb", "a=b", "a<<b", "a\rb"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    commands, _ = make(tmp_path)
    with pytest.raises(ValueError):
        commands.set_output(name, "v")
    with pytest.raises(ValueError):
        make()[0].save_state(name, "v")


def test_outside_actions_file_commands_do_nothing(tmp_path: Path) -> None:
    commands, out = make()
    commands.set_output("status", "ok")
    commands.save_state("flow_id", "x")
    commands.append_summary("# hi")
    assert out.getvalue() == ""
    assert list(tmp_path.iterdir()) == []


def test_summary_is_appended_as_utf8(tmp_path: Path) -> None:
    commands, _ = make(tmp_path)
    commands.append_summary("# one ✓")
    commands.append_summary("two\n")
    assert (tmp_path / "summary").read_bytes() == "# one ✓\ntwo\n".encode()


def test_summary_past_the_github_cap_is_refused_with_a_warning(tmp_path: Path) -> None:
    commands, out = make(tmp_path)
    (tmp_path / "summary").write_bytes(b"x" * (SUMMARY_FILE_LIMIT - 10))
    commands.append_summary("y" * 20)
    assert (tmp_path / "summary").stat().st_size == SUMMARY_FILE_LIMIT - 10
    assert out.getvalue().startswith("::warning title=Job summary too large::")


def test_lone_surrogates_from_json_cannot_break_utf8_writes(tmp_path: Path) -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    commands = WorkflowCommands(
        out,
        output_file=tmp_path / "output",
        state_file=None,
        summary_file=tmp_path / "summary",
    )
    commands.info("name \ud800 here")
    commands.echo_untrusted("log \udfff")
    commands.error("bad \ud83d", title="\udc00")
    commands.set_output("jobs", "\ud800")
    commands.append_summary("\ud800")
    assert "\ufffd" in (tmp_path / "output").read_text(encoding="utf-8")
    assert (tmp_path / "summary").read_text(encoding="utf-8") == "\ufffd\n"
