"""The step as GitHub shows it: the runner's parser on exact strings, the live view of a
protocol (groups, folds, masks, stop-commands, the annotation list and its limits), the
job summary drawn for a terminal, the colour decision, and hostile text kept inert.

Golden files (tests/golden/render/) hold every summary golden file drawn for a
terminal; `UPDATE_GOLDEN=1` rewrites them.
"""

from __future__ import annotations

import io
import os
import pty
import re
from pathlib import Path

import pytest

from conftest import assert_golden
from ectf_action.render import (
    Annotation,
    GitHubView,
    WorkflowCommand,
    parse_command,
    render_markdown,
    terminal_width,
    use_color,
)
from ectf_action.workflow import WorkflowCommands

GOLDEN = Path(__file__).parent / "golden"
SGR = re.compile(r"\x1b\[[0-9;]*m")
# Anything a terminal could act on: C0 and C1 controls (newline aside), DEL, bidi
# controls and the other invisible format characters.
ACTIVE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def view(protocol: str, *, fold: int | None = 3, color: bool = False) -> str:
    out = io.StringIO()
    shown = GitHubView(out, fold=fold, color=color)
    shown.write(protocol)
    shown.finish()
    return out.getvalue()


# -- the runner's parser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (
            "::error title=Job build%3A failed::build failed%0Asee log",
            WorkflowCommand("error", "build failed\nsee log", {"title": "Job build: failed"}),
        ),
        ("::warning::50%25 done", WorkflowCommand("warning", "50% done")),
        ("::notice::%2525 %250A", WorkflowCommand("notice", "%25 %0A")),
        ("   ::DEBUG::x", WorkflowCommand("debug", "x")),
        ("::group::a::b", WorkflowCommand("group", "a::b")),
        ("::endgroup::", WorkflowCommand("endgroup", "")),
        (
            "::error file=firmware/src/uart.c,line=374,col=5,endLine=376,endColumn=2,"
            "title=a%2Cb::implicit",
            WorkflowCommand(
                "error",
                "implicit",
                {
                    "file": "firmware/src/uart.c",
                    "line": "374",
                    "col": "5",
                    "endline": "376",
                    "endcolumn": "2",
                    "title": "a,b",
                },
            ),
        ),
        ("::error title=,=v,k=::x", WorkflowCommand("error", "x")),
        ("[ 0m00s] ##[warning]job  queued", WorkflowCommand("warning", "job  queued")),
        (
            "##[set-env name=X%3B;]legacy%5D env",
            WorkflowCommand("set-env", "legacy] env", {"name": "X;"}),
        ),
    ],
)
def test_parse_command_reads_a_line_as_the_runner_does(line: str, command: WorkflowCommand) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    "line", ["plain text", "::error", "::made-up::x", ":: error::x", "##[made-up]x", "##[error x"]
)
def test_parse_command_leaves_text_and_unknown_commands_alone(line: str) -> None:
    assert parse_command(line) is None


def test_parse_command_knows_what_it_is_told_to() -> None:
    assert parse_command("::C0FFEE::") is None
    assert parse_command("::C0FFEE:: tail", {"c0ffee"}) == WorkflowCommand("c0ffee", " tail")


# -- the live view -------------------------------------------------------------------------


def test_plain_lines_and_groups_as_the_log_shows_them() -> None:
    protocol = "first\n::group::eCTF job build: failed\none\ntwo\n::endgroup::\nlast\n"
    assert view(protocol) == "first\n> eCTF job build: failed\n  one\n  two\nlast\n"


def test_a_long_group_folds_to_its_last_lines_with_a_count() -> None:
    body = "".join(f"line {n}\n" for n in range(1, 8))
    assert view(f"::group::job\n{body}::endgroup::\n", fold=3) == (
        "> job\n  ... 4 earlier lines hidden\n  line 5\n  line 6\n  line 7\n"
    )
    # One hidden line is shown rather than counted.
    assert view("::group::job\na\nb\nc\nd\n::endgroup::\n", fold=3).count("hidden") == 0
    assert view(f"::group::job\n{body}::endgroup::\n", fold=None).count("  line") == 7


def test_lines_appear_as_they_are_written() -> None:
    out = io.StringIO()
    shown = GitHubView(out, fold=None)
    shown.write("[ 0m01s] build queued\n::group::job\n  inside")
    assert out.getvalue() == "[ 0m01s] build queued\n> job\n"
    shown.write(" still\n")
    assert out.getvalue().endswith("    inside still\n")
    folded = io.StringIO()
    GitHubView(folded).write("::group::job\nheld until the group ends\n")
    assert folded.getvalue() == "> job\n"


def test_lines_split_across_writes_and_line_breaks_of_every_kind() -> None:
    protocol = "a\r\nb\rc\n::error::x%0Ay\n"
    whole = view(protocol)
    out = io.StringIO()
    shown = GitHubView(out, fold=3)
    for char in protocol:
        shown.write(char)
    shown.finish()
    assert out.getvalue() == whole
    assert whole.startswith("a\nb\nc\nError: x\n       y\n")


def test_the_last_unfinished_line_and_an_open_group_end_with_the_step() -> None:
    assert view("::group::job\nno newline at the end") == "> job\n  no newline at the end\n"


def test_finish_is_once_and_close_finishes() -> None:
    out = io.StringIO()
    shown = GitHubView(out)
    shown.write("::warning::careful\n")
    shown.close()
    shown.finish()
    assert out.getvalue().count("Annotations") == 1
    with pytest.raises(ValueError):
        shown.write("more\n")
    assert not out.closed  # the view never closes the stream it draws on


def test_masks_hide_every_later_occurrence_but_not_earlier_ones() -> None:
    protocol = (
        "before s3cret\n"
        "::add-mask::s3cret\n"
        "::group::job s3cret\n"
        "after s3cret and s3cret-longer\n"
        "::endgroup::\n"
        "::error title=t s3cret::m s3cret\n"
        "::add-mask::two%0Alines\n"
        "one line: two, another: lines\n"
    )
    assert view(protocol) == (
        "before s3cret\n"
        "> job ***\n"
        "  after *** and ***-longer\n"
        "Error: m ***\n"
        "one line: ***, another: ***\n"
        "\n"
        "Annotations: 1 error\n"
        "  Error: t ***: m ***\n"
    )


def test_a_blank_mask_is_refused_with_the_runners_warning() -> None:
    shown = view("::add-mask::   \n")
    assert "Warning: Can't add secret mask for empty string in ##[add-mask] command." in shown


def test_stopped_commands_are_text_and_the_markers_are_never_shown() -> None:
    protocol = (
        "::stop-commands::Tok3n\n"
        "::error::not an error\n"
        "::add-mask::not a mask\n"
        "::group::not a group\n"
        "::tok3n::\n"
        "mask this: not a mask\n"
        "::stop-commands::second\n"
        "##[SECOND]legacy resume\n"
        "::notice::a real notice\n"
    )
    assert view(protocol) == (
        "::error::not an error\n"
        "::add-mask::not a mask\n"
        "::group::not a group\n"
        "mask this: not a mask\n"
        "Notice: a real notice\n"
        "\n"
        "Annotations: 1 notice\n"
        "  Notice: a real notice\n"
    )


def test_a_stop_token_that_names_a_command_unregisters_it_as_the_runner_does() -> None:
    shown = view("::stop-commands::warning\n::warning::resumes\n::warning::now text\n")
    assert shown == "::warning::now text\n"


def test_unknown_and_silent_commands() -> None:
    protocol = "::made-up::shown\n::debug::hidden\n::set-output name=a::b\n::echo::on\nend\n"
    assert view(protocol) == "::made-up::shown\nend\n"


def test_the_annotation_list_reads_as_githubs() -> None:
    protocol = (
        "::error file=firmware/src/uart.c,line=374,col=5,title=eCTF build::implicit "
        "declaration of function 'decrypt_frame'\n"
        "::warning file=firmware/src/flash.c,line=10,endLine=12::unused variable 'x'\n"
        "::warning file=README.md::no line\n"
        "::notice title=Note::one%0Atwo%0Athree%0Afour%0Afive%0Asix\n"
        "::error::\n"
    )
    listing = view(protocol, fold=None).split("\n\n", 1)[1]
    assert listing == (
        "Annotations: 2 errors, 2 warnings and 1 notice\n"
        "  Error: firmware/src/uart.c#L374 - eCTF build: implicit declaration of function "
        "'decrypt_frame'\n"
        "  Warning: firmware/src/flash.c#L10-L12 - unused variable 'x'\n"
        "  Warning: README.md - no line\n"
        "  Notice: Note: one\n"
        "    two\n"
        "    three\n"
        "    four\n"
        "    five\n"
        "    six\n"
        "  Error:\n"
    )
    folded = view(protocol, fold=8).split("\n\n", 1)[1]
    assert "    four\n    ... 2 more lines\n" in folded and "five" not in folded


def test_github_lists_ten_annotations_of_each_kind_per_step() -> None:
    protocol = "".join(f"::error::e{n}\n" for n in range(1, 13)) + "::warning::w\n"
    out = io.StringIO()
    shown = GitHubView(out)
    shown.write(protocol)
    assert [a.message for a in shown.annotations if a.kind == "error"] == [
        f"e{n}" for n in range(1, 11)
    ]
    shown.finish()
    text = out.getvalue()
    assert "Error: e12\n" in text.split("\n\n")[0]  # still in the log
    assert text.split("\n\n", 1)[1].splitlines()[0] == "Annotations: 10 errors and 1 warning"
    assert text.endswith("  ... 2 more errors only in the log: GitHub lists 10 errors per step\n")


def test_an_annotation_keeps_the_first_4096_characters_of_its_message() -> None:
    out = io.StringIO()
    shown = GitHubView(out)
    shown.write("::error::" + "x" * 5000 + "\n")
    assert shown.annotations == [Annotation("error", "x" * 4096)]


# -- hostile text --------------------------------------------------------------------------

HOSTILE = (
    "\x1b[2J\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    " \x9b31m c1 \x85 nel \x90dcs\x9c \u202eevil\u202c \u2066iso\u2069 zero\u200bwidth"
    " bell\x07 nul\x00 del\x7f \ud800 tab\tend\n"
    "::error::fake error\n"
    "::stop-commands::guessed\n"
    "::guessed::\n"
    "::endgroup::\n"
    "::add-mask::fake mask\n"
    "%0A::error::percent-encoded%0A\n"
    "##[warning]legacy\n"
    "progress 10%\r::error::after a lone CR\n"
    "the token: demo-token-value"
)


def hostile_protocol() -> str:
    """What the action's own writer prints for hostile server text: in a group, in an
    annotation, in a title, fenced, and in our own info lines."""
    out = io.StringIO()
    commands = WorkflowCommands(out, output_file=None, state_file=None, summary_file=None)
    out.write("::add-mask::demo-token-value\n")  # registered with the runner only
    with commands.group(f"eCTF job {HOSTILE}: failed"):
        commands.echo_untrusted(HOSTILE)
    commands.error(HOSTILE, title=f"eCTF job {HOSTILE} failed")
    commands.info(HOSTILE)
    return out.getvalue()


@pytest.mark.parametrize("color", [False, True])
def test_hostile_text_from_the_server_stays_inert(color: bool) -> None:
    out = io.StringIO()
    shown = GitHubView(out, color=color, fold=None)
    shown.write(hostile_protocol())
    shown.finish()
    text = out.getvalue()
    plain = SGR.sub("", text)
    assert not ACTIVE.search(plain), ACTIVE.findall(plain)
    assert "\x1b" not in plain  # every escape left is one of the view's own colours
    assert "demo-token-value" not in text and "***" in text
    assert "guessed" in text and "::error::fake error" in text  # shown, as text
    assert [a.title for a in shown.annotations] == [
        a.title for a in shown.annotations if a.title.startswith("eCTF job ")
    ]
    assert len(shown.annotations) == 1  # only the one the action made
    assert plain.count("Error: ") == 2  # its log line and its entry in the list
    if color:
        assert SGR.search(text)


def test_a_job_name_holding_a_legacy_command_issues_no_annotation() -> None:
    out = io.StringIO()
    commands = WorkflowCommands(out, output_file=None, state_file=None, summary_file=None)
    commands.info("[ 0m00s] ##[warning]job  queued")  # a live-log line naming a job
    shown = GitHubView(io.StringIO())
    shown.write(out.getvalue())
    assert shown.annotations == []


# -- markdown for a terminal ---------------------------------------------------------------

# The summary golden files are render_summary's own output (the e2e ones hold the
# placeholders of their normalisation, which read as HTML tags).
SUMMARIES = sorted((GOLDEN / "summary").glob("*.md"))


@pytest.mark.parametrize("source", SUMMARIES, ids=lambda path: path.stem)
def test_every_summary_drawn_for_a_terminal(source: Path) -> None:
    markdown = source.read_text(encoding="utf-8")
    drawn = render_markdown(markdown, width=100, color=False)
    assert_golden(GOLDEN / "render" / f"{source.stem}.txt", drawn)
    assert not ACTIVE.search(drawn)
    for escape in ("\\_", "\\*", "&#124;", "&lt;", "&amp;", "&#96;", "<details>", "| ---"):
        assert escape not in drawn


def test_markdown_escapes_entities_code_and_emphasis_are_resolved() -> None:
    markdown = "a \\*b\\* `c_d` **bold** _em_ test\\_functional x &#124; &lt;y&gt; &amp; z_w_v"
    assert render_markdown(markdown, width=100, color=False) == (
        "a *b* c_d bold em test_functional x | <y> & z_w_v\n"
    )
    assert render_markdown("<b>raw</b> `<b>code</b>` - <uuid>", width=100, color=False) == (
        "raw <b>code</b> -\n"
    )
    coloured = render_markdown("**bold** and _em_", width=100, color=True)
    assert coloured == "\x1b[1mbold\x1b[0m and \x1b[3mem\x1b[0m\n"


def test_markdown_entities_cannot_smuggle_control_characters() -> None:
    drawn = render_markdown(
        "&#27;[2J &#x9b;31m &#x202e;evil &#7; &#0; `\x1b[31m` \x1b]0;t\x07", width=100, color=False
    )
    assert not ACTIVE.search(drawn) and "\x1b" not in drawn
    assert "evil" in drawn


def test_a_table_is_aligned_by_display_width_and_fits_the_terminal() -> None:
    markdown = (
        "| Job | Size | Note |\n| --- | ---: | :---: |\n"
        "| 構築 | 1 B | a |\n| test\\_x | 121.7 KiB | `ok` |\n"
    )
    assert render_markdown(markdown, width=100, color=False) == (
        "Job          Size  Note\n"
        "------  ---------  ----\n"
        "構築          1 B   a\n"
        "test_x  121.7 KiB   ok\n"
    )
    wide = "| Name | Folder |\n| --- | --- |\n| " + "n" * 60 + " | " + "f" * 60 + " |\n"
    lines = render_markdown(wide, width=50, color=False).splitlines()
    assert max(len(line) for line in lines) <= 50
    assert lines[2].endswith("...")


def test_details_become_labelled_sections_with_their_code_indented() -> None:
    markdown = (
        "### Failed jobs\n\n<details><summary>build &amp; x: the log</summary>\n\n"
        "````text\n```\n**not bold** \\_ &lt;\n````\n\n</details>\n\nafter\n"
    )
    assert render_markdown(markdown, width=100, color=False) == (
        "Failed jobs\n"
        "-----------\n"
        "\n"
        "> build & x: the log\n"
        "    ```\n"
        "    **not bold** \\_ &lt;\n"
        "\n"
        "after\n"
    )


def test_paragraphs_and_list_items_wrap_to_the_width() -> None:
    words = " ".join(["word"] * 30)
    drawn = render_markdown(f"{words}\n\n- {words}\n", width=40, color=False).splitlines()
    assert max(len(line) for line in drawn) <= 40
    assert drawn[drawn.index("") + 1].startswith("  - word")
    assert drawn[-1].startswith("    word")


# -- colour and width, decided at the edge -------------------------------------------------


def test_colour_only_on_a_terminal_without_no_color() -> None:
    master, slave = pty.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as terminal:
            assert use_color(terminal, {}) is True
            assert use_color(terminal, {"NO_COLOR": ""}) is True  # set but empty: colour
            assert use_color(terminal, {"NO_COLOR": "1"}) is False
            assert use_color(terminal, {"TERM": "dumb"}) is False
        assert use_color(io.StringIO(), {}) is False
        closed = io.StringIO()
        closed.close()
        assert use_color(closed, {}) is False
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_width_comes_from_columns_or_the_terminal() -> None:
    assert terminal_width(io.StringIO(), {}) == 100
    assert terminal_width(io.StringIO(), {"COLUMNS": "80"}) == 80
    assert terminal_width(io.StringIO(), {"COLUMNS": "10"}) == 40
    assert terminal_width(io.StringIO(), {"COLUMNS": "wide"}) == 100


def test_a_link_in_the_summary_shows_its_text() -> None:
    """The summary links each diagnostic to the file on GitHub; a terminal shows the
    link's text, as GitHub does, not the markdown around it."""
    table = (
        "| | Where | Diagnostic |\n| --- | --- | --- |\n"
        "| error | [firmware/src/uart\\_x.c:290](https://github.com/o/r/blob/abc/f.c#L290) "
        "| implicit declaration |\n"
    )
    text = render_markdown(table, width=100, color=False)
    assert "firmware/src/uart_x.c:290" in text
    assert "](" not in text and "https://" not in text
