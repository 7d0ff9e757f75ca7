"""Builders of hostile zip archives, with the standard library only.

Each builder writes one archive to the given path and returns the path. Names that try
to escape point into the folder holding the archive (never at the real file system
root), so a test can walk that folder and prove nothing landed outside the destination.
Tricks that `zipfile` will not write (flags, raw name bytes, wrong CRCs and sizes) are
applied afterwards by patching the local header and the central directory record.
"""

from __future__ import annotations

import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

FIXED_TIME = (2026, 1, 2, 3, 4, 6)
MIB = 1024 * 1024

# Offsets inside the two headers that describe an entry (APPNOTE 4.3.7 and 4.3.12).
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_LOCAL_FIELDS = {"flags": 6, "crc": 14, "compressed": 18, "size": 22}
_CENTRAL_FIELDS = {"flags": 8, "crc": 16, "compressed": 20, "size": 24}
_FIELD_FORMAT = {"flags": "<H", "crc": "<I", "compressed": "<I", "size": "<I"}


def _info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = 3  # Unix, so the mode in external_attr is meaningful
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(
    path: Path,
    entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]],
) -> Path:
    """A zip holding *entries* in order; duplicate names are written as given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in entries:
                info = name if isinstance(name, zipfile.ZipInfo) else _info(name)
                archive.writestr(info, data)
    return path


def _central_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(central record offset, local header offset, raw name) of every entry."""
    records = []
    position = data.find(_CENTRAL_SIGNATURE)
    while position != -1:
        (name_length,) = struct.unpack_from("<H", data, position + 28)
        (local_offset,) = struct.unpack_from("<I", data, position + 42)
        name = data[position + 46 : position + 46 + name_length]
        records.append((position, local_offset, name))
        position = data.find(_CENTRAL_SIGNATURE, position + 46)
    return records


def patch_entry(path: Path, name: bytes, **values: int) -> None:
    """Overwrite header fields (flags, crc, compressed, size) of entry *name* in both
    its local header and its central directory record."""
    data = bytearray(path.read_bytes())
    matches = [record for record in _central_records(bytes(data)) if record[2] == name]
    assert len(matches) == 1, f"expected one entry {name!r}, found {len(matches)}"
    central, local, _ = matches[0]
    assert data[local : local + 4] == _LOCAL_SIGNATURE
    for field, value in values.items():
        fmt = _FIELD_FORMAT[field]
        struct.pack_into(fmt, data, local + _LOCAL_FIELDS[field], value)
        struct.pack_into(fmt, data, central + _CENTRAL_FIELDS[field], value)
    path.write_bytes(bytes(data))


def rename_raw(path: Path, placeholder: bytes, raw_name: bytes, *, utf8_flag: bool) -> None:
    """Replace an entry's name by raw bytes of the same length, in both headers, and
    set or clear its UTF-8 flag (bit 11)."""
    assert len(placeholder) == len(raw_name)
    data = path.read_bytes()
    assert data.count(placeholder) == 2, "the placeholder must appear only in the headers"
    path.write_bytes(data.replace(placeholder, raw_name))
    flags = 0x800 if utf8_flag else 0
    patch_entry(path, raw_name, flags=flags)


# -- the corpus --------------------------------------------------------------------------


def traversal(path: Path) -> Path:
    """Names that climb out with `..`, next to good ones."""
    return write_zip(
        path,
        [
            ("../escape-dotdot.txt", b"x"),
            ("a/../../escape-nested.txt", b"x"),
            ("good/../../../escape-deep.txt", b"x"),
            ("./ok-dot.txt", b"ok"),
            ("safe.txt", b"safe"),
        ],
    )


def absolute(path: Path) -> Path:
    """Absolute names, pointing into the archive's own folder."""
    base = path.parent.resolve().as_posix()
    return write_zip(
        path,
        [
            (f"{base}/escape-absolute.txt", b"x"),
            (f"/{base}/escape-double-slash.txt", b"x"),
            ("safe.txt", b"safe"),
        ],
    )


def drive_letters(path: Path) -> Path:
    return write_zip(
        path,
        [
            ("C:/escape-drive.txt", b"x"),
            ("C:escape-drive-relative.txt", b"x"),
            ("c:\\escape-drive-backslash.txt", b"x"),
            ("d/E:/escape-inner-drive.txt", b"x"),
            ("safe.txt", b"safe"),
        ],
    )


def backslashes(path: Path) -> Path:
    """Backslashes as separators: climbing, absolute, and one harmless nested name."""
    return write_zip(
        path,
        [
            ("..\\escape-backslash.txt", b"x"),
            ("sub\\..\\..\\escape-backslash-nested.txt", b"x"),
            ("\\escape-backslash-absolute.txt", b"x"),
            ("dir\\nested.txt", b"nested"),
        ],
    )


def symlinks(path: Path) -> Path:
    """Symlink entries (by mode), then files that would be written through them."""
    outside = path.parent.resolve().as_posix()
    link_mode = stat.S_IFLNK | 0o777
    return write_zip(
        path,
        [
            (_info("link-out", link_mode), outside.encode()),
            ("link-out/escape-through-link.txt", b"x"),
            (_info("rel-link", link_mode), b"../.."),
            ("rel-link/escape-through-relative.txt", b"x"),
            (_info("file-link", link_mode), f"{outside}/victim.txt".encode()),
            ("regular.txt", b"regular"),
        ],
    )


def special_files(path: Path) -> Path:
    return write_zip(
        path,
        [
            (_info("fifo", stat.S_IFIFO | 0o644), b""),
            (_info("chardev", stat.S_IFCHR | 0o644), b""),
            (_info("blockdev", stat.S_IFBLK | 0o644), b""),
            (_info("socket", stat.S_IFSOCK | 0o644), b""),
            ("regular.txt", b"regular"),
        ],
    )


def duplicates(path: Path) -> Path:
    """The same path spelled several ways; the first of each must win."""
    return write_zip(
        path,
        [
            ("dup.txt", b"first"),
            ("dup.txt", b"second"),
            ("./dup.txt", b"third"),
            ("sub//x.txt", b"first"),
            ("sub/x.txt", b"second"),
            ("sub\\x.txt", b"third"),
        ],
    )


def ratio_bomb(path: Path, size: int = 200 * MIB) -> Path:
    """*size* bytes of zeros, deflated to well under 1% of that."""
    chunk = bytes(MIB)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open(_info("zeros.bin"), "w", force_zip64=True) as handle,
    ):
        for _ in range(size // MIB):
            handle.write(chunk)
    return path


def count_bomb(path: Path, count: int = 400) -> Path:
    """Many tiny files."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            info = _info(f"many/f{index:06d}.txt")
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, b"x")
    return path


def bad_crc(path: Path) -> Path:
    """A stored 3 MiB entry whose last bytes were altered (the CRC fails only at the
    end, after several chunks were written), between two good entries."""
    body = b"A" * (3 * MIB)
    stored = _info("bad-crc.bin")
    stored.compress_type = zipfile.ZIP_STORED
    write_zip(path, [("good-before.txt", b"before"), (stored, body), ("good-after.txt", b"after")])
    data = bytearray(path.read_bytes())
    start = data.index(body)
    data[start + len(body) - 1] = ord("B")
    path.write_bytes(bytes(data))
    return path


def encrypted(path: Path) -> Path:
    """An entry flagged as encrypted (bit 0), next to a plain one."""
    write_zip(path, [("secret.txt", b"not really encrypted"), ("plain.txt", b"plain")])
    patch_entry(path, b"secret.txt", flags=0x1)
    return path


def non_utf8_name(path: Path) -> Path:
    """A name in raw bytes that are not UTF-8, without the UTF-8 flag (read as cp437)."""
    write_zip(path, [("cafX-YZ.txt", b"latin"), ("plain.txt", b"plain")])
    rename_raw(path, b"cafX-YZ.txt", b"caf\xe9-\x81\xff.txt", utf8_flag=False)
    return path


def invalid_utf8_flagged_name(path: Path) -> Path:
    """A name flagged UTF-8 that is not: zipfile cannot open the archive at all."""
    write_zip(path, [("cafX.txt", b"x")])
    rename_raw(path, b"cafX.txt", b"caf\xff.txt", utf8_flag=True)
    return path


def control_character_names(path: Path) -> Path:
    return write_zip(
        path,
        [
            ("red\x1b[31m.txt", b"x"),
            ("new\nline.txt", b"x"),
            ("plain.txt", b"plain"),
        ],
    )


def nul_in_name(path: Path) -> Path:
    """A name with a NUL byte, which zipfile cuts short when reading."""
    write_zip(path, [("evil.txtX../../escape-nul.txt", b"x"), ("plain.txt", b"plain")])
    data = path.read_bytes()
    path.write_bytes(data.replace(b"evil.txtX../", b"evil.txt\x00../"))
    return path


LONG_COMPONENT = "a" * 300 + ".txt"
LONG_MULTIBYTE = "\u00e9" * 150  # 300 bytes in UTF-8
DEEP_PATH = "/".join(["d" * 200] * 25) + "/f.txt"  # over 4096 bytes
LONG_BUT_FINE = "b" * 250


def long_names(path: Path) -> Path:
    return write_zip(
        path,
        [
            (LONG_COMPONENT, b"x"),
            (LONG_MULTIBYTE, b"x"),
            (DEEP_PATH, b"x"),
            (LONG_BUT_FINE, b"fine"),
        ],
    )


def lying_sizes(path: Path) -> Path:
    """Entries whose declared uncompressed sizes are too small and too large."""
    body = bytes(range(256)) * 8192  # 2 MiB, not very compressible
    write_zip(path, [("small-lie.bin", body), ("big-lie.bin", body), ("honest.txt", b"ok")])
    patch_entry(path, b"small-lie.bin", size=10)
    patch_entry(path, b"big-lie.bin", size=len(body) * 4)
    return path


def path_conflicts(path: Path) -> Path:
    """A file where a folder must go, and a folder where a file must go."""
    return write_zip(
        path,
        [
            ("a", b"file a"),
            ("a/b.txt", b"x"),
            ("c/d.txt", b"d"),
            ("c", b"file c"),
        ],
    )


def mixed(path: Path) -> Path:
    """Good files among hostile ones: the good ones must all come out."""
    archive = write_zip(
        path,
        [
            ("build/output.log", b"line 1\nline 2\n"),
            ("../escape-mixed.txt", b"x"),
            (_info("link", stat.S_IFLNK | 0o777), b"/"),
            (_info("build/", stat.S_IFDIR | 0o755), b""),
            ("build/firmware.bin", bytes(range(256))),
            ("secret.txt", b"x"),
            ("build/output.log", b"a duplicate"),
            ("report/summary.txt", b"done"),
        ],
    )
    patch_entry(archive, b"secret.txt", flags=0x1)
    return archive


def not_a_zip(path: Path) -> Path:
    path.write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    return path


def truncated(path: Path) -> Path:
    write_zip(path, [("a.txt", b"a" * 1000), ("b.txt", b"b" * 1000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# Every archive that extract_zip must survive without raising, by name.
SURVIVABLE: dict[str, Callable[[Path], Path]] = {
    "traversal": traversal,
    "absolute": absolute,
    "drive_letters": drive_letters,
    "backslashes": backslashes,
    "symlinks": symlinks,
    "special_files": special_files,
    "duplicates": duplicates,
    "count_bomb": count_bomb,
    "bad_crc": bad_crc,
    "encrypted": encrypted,
    "non_utf8_name": non_utf8_name,
    "control_character_names": control_character_names,
    "nul_in_name": nul_in_name,
    "long_names": long_names,
    "lying_sizes": lying_sizes,
    "path_conflicts": path_conflicts,
    "mixed": mixed,
}

# Archives that are not readable zips at all: extract_zip raises DownloadError.
UNREADABLE: dict[str, Callable[[Path], Path]] = {
    "not_a_zip": not_a_zip,
    "truncated": truncated,
    "invalid_utf8_flagged_name": invalid_utf8_flagged_name,
}
