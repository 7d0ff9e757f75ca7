"""Safe extraction of hostile zips, job folder names and log tails."""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import hostile_zips
from ectf_action.artifacts import (
    MAX_PROBLEMS,
    ExtractLimits,
    ExtractReport,
    extract_zip,
    job_dir_name,
    log_files,
    read_log_tail,
)
from ectf_action.errors import DownloadError
from ectf_action.text import clean_terminal_text, tail_text

MIB = 1024 * 1024
ROOMY = ExtractLimits(max_bytes=64 * MIB, max_files=5000)


def extract(
    build: Callable[[Path], Path], tmp_path: Path, limits: ExtractLimits = ROOMY
) -> tuple[ExtractReport, Path]:
    archive = build(tmp_path / "job.zip")
    dest = tmp_path / "out"
    return extract_zip(archive, dest, limits), dest


def tree(root: Path) -> set[str]:
    """Every path under *root* (links not followed), relative, posix style."""
    found = set()
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(Path(top, name).relative_to(root).as_posix())
    return found


def files_in(root: Path) -> set[str]:
    return {p for p in tree(root) if (root / p).is_file()}


def assert_contained(tmp_path: Path, dest: Path) -> None:
    """Nothing but the archive and the destination in the tmp tree; nothing in the
    destination that is a link, a special file, or has loose permissions."""
    assert {p.name for p in tmp_path.iterdir()} <= {"job.zip", "out", "outside"}
    for relative in tree(dest):
        info = os.lstat(dest / relative)
        assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode), relative
        if stat.S_ISREG(info.st_mode):
            assert info.st_mode & 0o133 == 0, relative  # no exec bits, no group/other write
        else:
            assert info.st_mode & 0o022 == 0, relative
        assert os.path.realpath(dest / relative).startswith(os.path.realpath(dest) + os.sep)


# -- the hostile corpus -----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(hostile_zips.SURVIVABLE))
def test_nothing_is_written_outside_dest(case: str, tmp_path: Path) -> None:
    report, dest = extract(hostile_zips.SURVIVABLE[case], tmp_path)
    assert_contained(tmp_path, dest)
    assert report.files == len(files_in(dest))
    assert report.bytes == sum((dest / p).stat().st_size for p in files_in(dest))
    assert report.problems or case in ("non_utf8_name", "count_bomb")
    for problem in report.problems:
        assert "\n" not in problem and "\x1b" not in problem
        assert len(problem) < 250


EXPECTED: dict[str, tuple[set[str], list[str]]] = {
    "traversal": ({"ok-dot.txt", "safe.txt"}, ["'..'"] * 3),
    "absolute": ({"safe.txt"}, ["absolute"] * 2),
    "drive_letters": ({"safe.txt"}, ["drive letter"] * 4),
    "backslashes": ({"dir/nested.txt"}, ["'..'", "'..'", "absolute"]),
    "symlinks": (
        {
            "link-out/escape-through-link.txt",
            "rel-link/escape-through-relative.txt",
            "regular.txt",
        },
        ["symbolic link"] * 3,
    ),
    "special_files": ({"regular.txt"}, ["device, pipe or socket"] * 4),
    "duplicates": ({"dup.txt", "sub/x.txt"}, ["duplicate"] * 4),
    "bad_crc": ({"good-before.txt", "good-after.txt"}, ["CRC"]),
    "encrypted": ({"plain.txt"}, ["encrypted"]),
    "control_character_names": ({"plain.txt"}, ["control characters"] * 2),
    "nul_in_name": ({"plain.txt"}, ["NUL"]),
    "long_names": (
        {hostile_zips.LONG_BUT_FINE},
        ["over 255 bytes", "over 255 bytes", "over 4096 bytes"],
    ),
    "lying_sizes": ({"big-lie.bin", "honest.txt"}, ["CRC"]),
    "path_conflicts": ({"a", "c/d.txt"}, ["a file is where", "a folder of the same name"]),
    "mixed": (
        {"build/output.log", "build/firmware.bin", "report/summary.txt"},
        ["'..'", "symbolic link", "encrypted", "duplicate"],
    ),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_good_entries_come_out_and_each_problem_is_named(case: str, tmp_path: Path) -> None:
    report, dest = extract(hostile_zips.SURVIVABLE[case], tmp_path)
    expected_files, expected_problems = EXPECTED[case]
    assert files_in(dest) == expected_files
    assert len(report.problems) == len(expected_problems), report.problems
    for problem, fragment in zip(report.problems, expected_problems, strict=True):
        assert fragment in problem
        assert re.match(r"^'.*': ", problem), problem
    assert not report.stopped


def test_the_first_of_duplicates_wins(tmp_path: Path) -> None:
    _, dest = extract(hostile_zips.duplicates, tmp_path)
    assert (dest / "dup.txt").read_bytes() == b"first"
    assert (dest / "sub/x.txt").read_bytes() == b"first"


def test_non_utf8_name_is_kept_as_a_safe_component(tmp_path: Path) -> None:
    report, dest = extract(hostile_zips.non_utf8_name, tmp_path)
    names = files_in(dest)
    assert "plain.txt" in names
    assert len(names) == 2
    assert report.problems == []
    odd = next(n for n in names if n != "plain.txt")
    assert "/" not in odd and odd.startswith("caf")


def test_hostile_names_are_escaped_and_trimmed_in_problems(tmp_path: Path) -> None:
    report, _ = extract(hostile_zips.control_character_names, tmp_path)
    assert report.problems[0].startswith("'red\\x1b[31m.txt': ")
    assert report.problems[1].startswith("'new\\nline.txt': ")
    (tmp_path / "again").mkdir()
    report, _ = extract(hostile_zips.long_names, tmp_path / "again")
    assert all(len(problem) < 160 for problem in report.problems)


def test_a_lying_size_is_not_trusted(tmp_path: Path) -> None:
    report, dest = extract(hostile_zips.lying_sizes, tmp_path)
    assert (dest / "big-lie.bin").stat().st_size == 2 * MIB
    assert report.bytes == 2 * MIB + len(b"ok")


# -- caps -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ratio_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_zips.ratio_bomb(tmp_path_factory.mktemp("bomb") / "bomb.zip")


def test_ratio_bomb_stops_at_the_byte_cap(ratio_bomb: Path, tmp_path: Path) -> None:
    assert ratio_bomb.stat().st_size < 2 * MIB  # 200 MiB inside
    dest = tmp_path / "out"
    report = extract_zip(ratio_bomb, dest, ExtractLimits(max_bytes=8 * MIB))
    assert report.stopped
    assert report.files == 0 and report.bytes == 0
    assert files_in(dest) == set()  # the partial file was removed
    assert len(report.problems) == 1
    assert report.problems[0].startswith("'zeros.bin': extraction stopped here")
    assert "8 MiB" in report.problems[0] and "max-artifact-mb" in report.problems[0]


def test_byte_cap_counts_real_bytes_across_files(tmp_path: Path) -> None:
    entries = [(f"part{index}.bin", bytes(range(256)) * (3 * MIB // 256)) for index in range(5)]
    archive = hostile_zips.write_zip(tmp_path / "job.zip", entries)
    dest = tmp_path / "out"
    report = extract_zip(archive, dest, ExtractLimits(max_bytes=7 * MIB))
    assert report.stopped
    assert files_in(dest) == {"part0.bin", "part1.bin"}
    assert report.bytes == 6 * MIB == sum((dest / p).stat().st_size for p in files_in(dest))
    assert "(3 entries not extracted)" in report.problems[-1]


def test_a_file_exactly_at_the_cap_fits(tmp_path: Path) -> None:
    archive = hostile_zips.write_zip(tmp_path / "job.zip", [("exact.bin", b"x" * 1000)])
    report = extract_zip(archive, tmp_path / "out", ExtractLimits(max_bytes=1000))
    assert (report.files, report.bytes, report.stopped) == (1, 1000, False)
    report = extract_zip(archive, tmp_path / "out2", ExtractLimits(max_bytes=999))
    assert (report.files, report.bytes, report.stopped) == (0, 0, True)
    assert "999 bytes cap" in report.problems[0]


def test_file_count_cap(tmp_path: Path) -> None:
    report, dest = extract(
        hostile_zips.count_bomb, tmp_path, ExtractLimits(max_bytes=MIB, max_files=100)
    )
    assert report.stopped
    assert len(tree(dest)) == 100  # the folder "many" and 99 files
    assert report.files == 99
    assert "cap of 100 files and folders" in report.problems[-1]
    assert "(301 entries not extracted)" in report.problems[-1]


def test_problems_are_bounded(tmp_path: Path) -> None:
    entries = [(f"../x{i}", b"x") for i in range(200)]
    archive = hostile_zips.write_zip(tmp_path / "job.zip", entries)
    report = extract_zip(archive, tmp_path / "out", ROOMY)
    assert len(report.problems) == MAX_PROBLEMS + 1
    assert report.problems[-1] == "150 more entries were skipped for similar reasons."


# -- the destination --------------------------------------------------------------------


def test_existing_symlinks_at_the_destination_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("untouched")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "victim.txt").symlink_to(outside / "victim.txt")
    (dest / "dir").symlink_to(outside)
    (dest / "dangling.txt").symlink_to(outside / "created-through-dangling.txt")
    archive = hostile_zips.write_zip(
        tmp_path / "job.zip",
        [("victim.txt", b"pwned"), ("dir/new.txt", b"pwned"), ("dangling.txt", b"pwned")],
    )
    report = extract_zip(archive, dest, ROOMY)
    assert report.files == 0
    assert len(report.problems) == 3
    assert all("refused: a symbolic link" in problem for problem in report.problems)
    assert (outside / "victim.txt").read_text() == "untouched"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_extracting_again_replaces_earlier_files(tmp_path: Path) -> None:
    first = hostile_zips.write_zip(tmp_path / "first.zip", [("a/log.txt", b"old")])
    second = hostile_zips.write_zip(tmp_path / "second.zip", [("a/log.txt", b"new")])
    extract_zip(first, tmp_path / "out", ROOMY)
    report = extract_zip(second, tmp_path / "out", ROOMY)
    assert report.problems == []
    assert (tmp_path / "out/a/log.txt").read_bytes() == b"new"


def test_dest_is_created_with_parents(tmp_path: Path) -> None:
    archive = hostile_zips.write_zip(tmp_path / "job.zip", [("f.txt", b"x")])
    report = extract_zip(archive, tmp_path / "deep/er/out", ROOMY)
    assert report.files == 1


def test_a_dest_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    archive = hostile_zips.write_zip(tmp_path / "job.zip", [("f.txt", b"x")])
    (tmp_path / "blocker").write_text("a file")
    report = extract_zip(archive, tmp_path / "blocker/out", ROOMY)
    assert report.stopped and report.files == 0
    assert "could not be created" in report.problems[0]


@pytest.mark.parametrize("case", sorted(hostile_zips.UNREADABLE))
def test_unreadable_archives_raise_download_error(case: str, tmp_path: Path) -> None:
    archive = hostile_zips.UNREADABLE[case](tmp_path / "job.zip")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        extract_zip(archive, tmp_path / "out", ROOMY)
    assert not (tmp_path / "out").exists()


def test_a_missing_file_raises_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError):
        extract_zip(tmp_path / "missing.zip", tmp_path / "out", ROOMY)


def test_limits_cannot_be_negative() -> None:
    with pytest.raises(ValueError):
        ExtractLimits(max_bytes=-1)


# -- job folder names -------------------------------------------------------------------

SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,72}$")


@pytest.mark.parametrize("name", ["build", "pull-repo", "team_approval", "v1.2", "get_ports"])
def test_plain_job_names_are_kept(name: str) -> None:
    assert job_dir_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "a\\b", "C:", "x\x00y", "\n", ".hidden", "é", "a" * 500, " "],
)
def test_hostile_job_names_become_one_safe_component(name: str) -> None:
    result = job_dir_name(name)
    assert SAFE_COMPONENT.match(result), result
    assert result not in (".", "..")
    assert job_dir_name(name) == result  # stable


def test_names_that_clean_up_alike_do_not_collide() -> None:
    names = ["a b", "a/b", "a\\b", "a_b", "a:b", "a" * 100, "a" * 101]
    assert len({job_dir_name(n) for n in names}) == len(names)


# -- log tails --------------------------------------------------------------------------


def test_log_files_are_preferred_sorted_and_labelled(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a log\n")
    (tmp_path / "b.log").write_text("b1\nb2\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.log").write_text("a1\n")
    (tmp_path / "a.log").write_text("top\n")
    assert (
        read_log_tail(tmp_path)
        == "==> a.log <==\ntop\n==> b.log <==\nb1\nb2\n==> sub/a.log <==\na1"
    )


def test_log_files_name_the_same_files_in_both_orders(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b\n")
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "c.bin").write_bytes(b"\x00")
    assert [name for name, _ in log_files(tmp_path)] == ["a.txt", "b.txt"]
    assert [name for name, _ in log_files(tmp_path, last_first=True)] == ["b.txt", "a.txt"]
    (tmp_path / "z.log").write_text("z\n")
    assert [name for name, _ in log_files(tmp_path)] == ["z.log"]
    assert list(log_files(tmp_path / "missing")) == []


def test_one_log_file_is_not_labelled(tmp_path: Path) -> None:
    (tmp_path / "build.log").write_text("one\ntwo\n")
    (tmp_path / "firmware.bin").write_bytes(b"\x00\x01")
    assert read_log_tail(tmp_path) == "one\ntwo"


def test_without_logs_text_files_are_used_and_binaries_skipped(tmp_path: Path) -> None:
    (tmp_path / "firmware.bin").write_bytes(b"ELF\x00\x01\x02" * 100)
    (tmp_path / "output.txt").write_text("result: ok\n")
    (tmp_path / "empty.txt").write_text("")
    assert read_log_tail(tmp_path) == "result: ok"


def test_only_the_end_of_a_big_log_is_read(tmp_path: Path) -> None:
    lines = [f"line {i:07d} " + "x" * 80 for i in range(60_000)]  # about 5.6 MB
    (tmp_path / "build.log").write_text("\n".join(lines) + "\n")
    tail = read_log_tail(tmp_path, max_lines=40, max_bytes=8192)
    assert tail.split("\n") == lines[-40:]
    tail = read_log_tail(tmp_path, max_lines=1000, max_bytes=1000)
    assert len(tail.encode()) <= 1000
    assert tail.split("\n") == lines[-len(tail.split("\n")) :]


def test_log_tail_never_cuts_a_character(tmp_path: Path) -> None:
    (tmp_path / "build.log").write_text("é" * 5000)  # one long line of 2-byte characters
    tail = read_log_tail(tmp_path, max_bytes=1001)
    assert tail == "é" * 500


def test_log_tail_is_cleaned(tmp_path: Path) -> None:
    raw = (
        b"\x1b[31mred\x1b[0m text\n"
        b"progress 10%\rprogress 100%\r\n"
        b"bell\x07 nul\x00 tab\tkept\n"
        b"\x1b]0;title\x07after osc\n"
        b"bidi \xe2\x80\xaeevil\n"
        b"bad utf8 \xff\xfe\n"
    )
    (tmp_path / "job.log").write_bytes(raw)
    assert read_log_tail(tmp_path) == (
        "red text\nprogress 100%\nbell nul tab\tkept\nafter osc\nbidi evil\nbad utf8 \ufffd\ufffd"
    )


def test_symlinked_logs_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    job = tmp_path / "job"
    job.mkdir()
    (job / "evil.log").symlink_to(secret)
    (job / "real.log").write_text("real")
    assert read_log_tail(job) == "real"


def test_missing_or_empty_job_dir_gives_empty_tail(tmp_path: Path) -> None:
    assert read_log_tail(tmp_path / "missing") == ""
    assert read_log_tail(tmp_path) == ""


def test_clean_terminal_text_and_tail_text() -> None:
    assert clean_terminal_text("a\x1b[1;32mb\x9b31mc\x1bPdcs\x1b\\d") == "abcd"
    assert tail_text("1\n2\n3", 2, 100) == "2\n3"
    assert tail_text("1\n2\n3", 5, 3) == "2\n3"
    assert tail_text("abcdef", 5, 3) == "def"
    assert tail_text("abc", 0, 3) == ""


def test_log_tail_of_many_text_files_shows_the_last_ones_labelled(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for i in range(300):
        (job / f"case{i:03d}.txt").write_text(f"result of case {i}\n" * 50, encoding="utf-8")
    (job / "zz.bin").write_bytes(b"\x00binary")
    tail = read_log_tail(job, max_lines=5, max_bytes=4096)
    assert tail.splitlines()[-1] == "result of case 299"
    assert "==> case299.txt <==" in tail or len(tail.splitlines()) == 5
    assert "case 000" not in tail and "binary" not in tail


def test_a_secret_in_an_entry_name_is_never_a_file_name(tmp_path: Path) -> None:
    """The server may name a file after the token: the name is redacted, the bytes kept."""
    token = "tok-in-a-name-secret"
    archive = tmp_path / "named.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"logs/{token}.log", f"the token: {token}\n")
        zf.writestr(f"{token}/build.log", "built\n")
    dest = tmp_path / "out"
    report = extract_zip(
        archive, dest, ExtractLimits(max_bytes=MIB), redact=lambda t: t.replace(token, "***")
    )
    assert report.files == 2 and not report.problems
    names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert names == ["***", "***/build.log", "logs", "logs/***.log"]
    assert (dest / "logs" / "***.log").read_text() == f"the token: {token}\n"  # bytes as sent
