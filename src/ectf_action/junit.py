"""The run as a JUnit XML report, for the test-report actions people already use.

The shape is the classic one that dorny/test-reporter (`java-junit`),
mikepenz/action-junit-report and EnricoMi/publish-unit-test-result-action all read:
`<testsuites>` > one `<testsuite>` per flow (with tests/failures/errors/skipped/time) >
one `<testcase>` per job. A failed job carries its log tail in `<failure>`; canceled,
pending and unfinished jobs are `<skipped>` with the reason. A run that ended in an
error or timed out also gets a `flow` test case saying so, so the report is never an
empty (and so green) document. The output is deterministic: no timestamps, no hostname.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite

from .models import JobStatus
from .results import NO_LOG, JobOutcome, RunResult, RunStatus
from .text import clean_terminal_text, one_line

MAX_NAME_CHARS = 200
MAX_MESSAGE_CHARS = 1000
MAX_TEXT_CHARS = 64 * 1024
FLOW_CASE_NAME = "flow"

# Everything XML 1.0 allows, minus the C1 controls it merely discourages.
_ILLEGAL_XML = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_FLOW_MESSAGES = {
    RunStatus.SUCCEEDED: "The flow succeeded without reporting any job.",
    RunStatus.FAILED: "The flow failed without reporting any job.",
    RunStatus.CANCELED: "The run was canceled before any job was reported.",
    RunStatus.PENDING: "The flow is waiting for input.",
    RunStatus.TIMED_OUT: "The flow did not finish within timeout-minutes.",
    RunStatus.SKIPPED: "The run was skipped.",
    RunStatus.ERROR: "The run ended in an error.",
    RunStatus.QUEUED: "The flow was queued and left running, not followed (wait: false).",
}


def xml_text(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Server text made safe for XML 1.0 and bounded to *limit* characters (the head,
    or the end for logs, whose last lines matter)."""
    text = _ILLEGAL_XML.sub("", text)
    if len(text) <= limit:
        return text
    return "..." + text[-(limit - 3) :] if keep_end else text[: limit - 3] + "..."


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _job_case(outcome: JobOutcome, classname: str) -> TestCase:
    name = xml_text(one_line(outcome.name), MAX_NAME_CHARS)
    case = TestCase(name, classname=classname, stdout=_job_notes(outcome) or None)
    if outcome.status is JobStatus.FAILED:
        log = xml_text(
            clean_terminal_text(outcome.log_tail).strip("\n"), MAX_TEXT_CHARS, keep_end=True
        )
        # The first error line is what test reporters show first; the tail below it.
        first = xml_text(one_line(outcome.first_error), MAX_MESSAGE_CHARS)
        case.add_failure_info(message=first or f"job {name} failed", output=log or NO_LOG)
        return case
    reason = outcome.skip_reason()
    if reason is not None:
        case.add_skipped_info(message=xml_text(reason, MAX_MESSAGE_CHARS))
    return case


def _location(outcome: JobOutcome) -> dict[str, str]:
    """`file` and `line` of a failed job's first error located in the workspace, which
    the test-report actions turn into an annotation on that line."""
    if outcome.status is not JobStatus.FAILED or not outcome.error_file:
        return {}
    where = {"file": xml_text(outcome.error_file, MAX_NAME_CHARS)}
    if outcome.error_line:
        where["line"] = str(outcome.error_line)
    return where


def _job_notes(outcome: JobOutcome) -> str:
    """Where the job's artifacts went, and what went wrong fetching them."""
    lines = []
    if outcome.artifacts_dir:
        files = outcome.artifact_files
        lines.append(
            f"artifacts: {one_line(outcome.artifacts_dir)} "
            f"({files} file{'' if files == 1 else 's'}, {outcome.artifact_bytes} bytes)"
        )
    lines.extend(f"warning: {one_line(warning)}" for warning in outcome.warnings)
    return xml_text("\n".join(lines), MAX_TEXT_CHARS)


def _flow_case(result: RunResult, classname: str) -> TestCase | None:
    """A test case for the run itself when the jobs alone would not tell its result."""
    if result.jobs and result.status not in (RunStatus.ERROR, RunStatus.TIMED_OUT):
        return None
    message = xml_text(result.message or _FLOW_MESSAGES[result.status], MAX_MESSAGE_CHARS)
    case = TestCase(FLOW_CASE_NAME, classname=classname)
    if result.status is RunStatus.ERROR:
        case.add_error_info(message=message, output=message)
    elif result.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        case.add_failure_info(message=message, output=message)
    elif result.status is not RunStatus.SUCCEEDED:
        case.add_skipped_info(message=message)
    return case


def render_junit(result: RunResult) -> str:
    """The JUnit XML document of *result*, as text (UTF-8, with an XML declaration)."""
    classname = xml_text(f"ectf.{result.flow_name}", MAX_NAME_CHARS)
    cases = [_job_case(outcome, classname) for outcome in result.jobs]
    times = [outcome.observed_seconds for outcome in result.jobs]
    flow_case = _flow_case(result, classname)
    if flow_case is not None:
        cases.append(flow_case)
        times.append(result.elapsed_seconds)
    properties = {
        "flow_id": result.flow_id or "",
        "flow": result.flow_name,
        "commit": result.commit,
        "status": result.status.value,
    }
    warnings = "\n".join(f"warning: {one_line(warning)}" for warning in result.warnings)
    suite = TestSuite(
        classname,
        test_cases=cases,
        properties={key: xml_text(value, MAX_MESSAGE_CHARS) for key, value in properties.items()},
        stdout=xml_text(warnings, MAX_TEXT_CHARS) or None,
    )
    suite_element = suite.build_xml_doc()
    # junit_xml leaves `time` out of a case that took 0 s; every reader wants it, and
    # a fixed attribute order keeps the document stable.
    located = [_location(outcome) for outcome in result.jobs] + [{}] * (
        len(times) - len(result.jobs)
    )
    for element, seconds, where in zip(suite_element.iter("testcase"), times, located, strict=True):
        attributes = {"name": element.get("name", ""), "classname": classname}
        element.attrib.clear()
        element.attrib.update({**attributes, "time": _seconds(seconds), **where})
    # The classic schema puts the suite's own output after its test cases.
    for output in suite_element.findall("system-out"):
        suite_element.remove(output)
        suite_element.append(output)
    suite_time = result.elapsed_seconds or sum(times)
    suite_element.set("time", _seconds(suite_time))

    root = ET.Element(
        "testsuites",
        {
            "name": classname,
            "tests": suite_element.get("tests", "0"),
            "failures": suite_element.get("failures", "0"),
            "errors": suite_element.get("errors", "0"),
            "skipped": suite_element.get("skipped", "0"),
            "time": _seconds(suite_time),
        },
    )
    root.append(suite_element)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'
