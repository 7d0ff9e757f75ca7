"""Attack-package encryption against the real `openssl` binary: what openssl encrypts we
decrypt, what we encrypt openssl decrypts, and a wrong key never leaves a file behind.

Skipped, with the reason, where no openssl with `enc -pbkdf2` (1.1.1 or newer) is
installed."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from ectf_action.crypto import (
    HEADER_BYTES,
    DecryptError,
    decrypt_file,
    decrypt_stream,
    derive_key_iv,
    encrypt_stream,
)

KEY = "4f1c0de5 the organizers' key"
SIZES = (0, 1, 15, 16, 17, 4096, 1024 * 1024 + 3)


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    probe = subprocess.run(
        [path, "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-k", "k", "-in", os.devnull],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"this openssl has no `enc -pbkdf2` (1.1.1 or newer needed): {path}")
    return path


@pytest.fixture(scope="module")
def openssl() -> str:
    return _openssl()


def openssl_enc(openssl: str, data: bytes, key: str, *decrypt: str) -> bytes:
    """`openssl enc [-d] -aes-256-cbc -pbkdf2 -salt -k KEY`, the organizers' command."""
    done = subprocess.run(
        [openssl, "enc", *decrypt, "-aes-256-cbc", "-pbkdf2", "-salt", "-k", key],
        input=data,
        capture_output=True,
        check=True,
    )
    return done.stdout


def a_zip(size: int = 20_000) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hsm.bin", os.urandom(size))
        archive.writestr("README.txt", "the attack package\n")
    return buffer.getvalue()


def ours(data: bytes, key: str = KEY, chunk_bytes: int = 7) -> bytes:
    """Our decryption, in odd-sized chunks so that blocks straddle them."""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, key, chunk_bytes=chunk_bytes)
    return out.getvalue()


# -- the format --------------------------------------------------------------------------


def test_the_key_and_iv_are_what_openssl_derives(openssl: str) -> None:
    salt = bytes.fromhex("0011223344556677")
    shown = subprocess.run(
        [openssl, "enc", "-aes-256-cbc", "-pbkdf2", "-k", KEY, "-S", salt.hex(), "-P"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    printed = {
        name.strip(): value.strip()
        for name, value in (line.split("=", 1) for line in shown.splitlines())
    }
    key, iv = derive_key_iv(KEY, salt)
    assert (printed["key"], printed["iv"]) == (key.hex().upper(), iv.hex().upper())


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_what_openssl_encrypted(openssl: str, size: int) -> None:
    plain = os.urandom(size)
    encrypted = openssl_enc(openssl, plain, KEY)
    assert encrypted.startswith(b"Salted__")
    assert ours(encrypted) == plain
    assert ours(encrypted, chunk_bytes=1024 * 1024) == plain


@pytest.mark.parametrize("size", SIZES)
def test_openssl_decrypts_what_we_encrypt(openssl: str, size: int) -> None:
    plain = os.urandom(size)
    encrypted = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), encrypted, KEY, chunk_bytes=5)
    assert openssl_enc(openssl, encrypted.getvalue(), KEY, "-d") == plain


def test_a_key_beyond_ascii_is_its_utf8_bytes(openssl: str) -> None:
    key = "clé ünïcode ✓"
    assert ours(openssl_enc(openssl, b"payload", key), key) == b"payload"


def test_a_fresh_salt_each_time_unless_one_is_given() -> None:
    first, second, fixed = io.BytesIO(), io.BytesIO(), io.BytesIO()
    encrypt_stream(io.BytesIO(b"x"), first, KEY)
    encrypt_stream(io.BytesIO(b"x"), second, KEY)
    encrypt_stream(io.BytesIO(b"x"), fixed, KEY, salt=b"8 bytes!")
    assert first.getvalue()[8:16] != second.getvalue()[8:16]
    assert fixed.getvalue()[8:16] == b"8 bytes!"


# -- what goes wrong ---------------------------------------------------------------------


def test_a_wrong_key_is_bad_padding(openssl: str) -> None:
    # openssl's own verdict on the same bytes, so the test cannot pass on a broken check
    encrypted = openssl_enc(openssl, a_zip(), KEY)
    refused = subprocess.run(
        [openssl, "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-k", "wrong"],
        input=encrypted,
        capture_output=True,
    )
    assert refused.returncode != 0 and b"bad decrypt" in refused.stderr
    with pytest.raises(DecryptError, match="wrong key: the decrypted padding is invalid"):
        ours(encrypted, "wrong")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "no Salted__ header"),
        (b"Salted__1234", "no Salted__ header"),
        (b"PK\x03\x04" + bytes(40), "already a zip"),
        (b"Salted__12345678", "0 encrypted bytes are not a whole number"),
    ],
)
def test_not_an_encrypted_package(data: bytes, problem: str) -> None:
    with pytest.raises(DecryptError, match=problem):
        ours(data)


def test_a_package_cut_short(openssl: str) -> None:
    encrypted = openssl_enc(openssl, os.urandom(100), KEY)
    with pytest.raises(DecryptError, match="cut short or damaged: 107 encrypted bytes"):
        ours(encrypted[:-5])


# -- files -------------------------------------------------------------------------------


def test_decrypt_file_writes_the_zip_openssl_would(openssl: str, tmp_path: Path) -> None:
    package = a_zip()
    source = tmp_path / "mitre.enc"
    source.write_bytes(openssl_enc(openssl, package, KEY))
    done = decrypt_file(source, tmp_path / "out" / "mitre.zip", KEY)
    assert done.path.read_bytes() == package and done.size == len(package)
    assert sorted(p.name for p in done.path.parent.iterdir()) == ["mitre.zip"]


@pytest.mark.parametrize(
    ("plain", "key", "problem"),
    [
        (a_zip(), "wrong", "wrong key: the decrypted padding is invalid"),
        # the right padding, but not a zip: what a wrong key gives about once in 256
        (b"noise that decrypted with valid padding", KEY, "not a zip"),
    ],
)
def test_a_wrong_key_leaves_no_file_and_keeps_the_old_one(
    openssl: str, tmp_path: Path, plain: bytes, key: str, problem: str
) -> None:
    source = tmp_path / "mitre.enc"
    source.write_bytes(openssl_enc(openssl, plain, KEY))
    dest = tmp_path / "mitre.zip"
    dest.write_bytes(b"an earlier zip")
    with pytest.raises(DecryptError, match=f"cannot decrypt mitre.enc: .*{problem}"):
        decrypt_file(source, dest, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mitre.enc", "mitre.zip"]
    assert dest.read_bytes() == b"an earlier zip"


def test_decryption_streams_in_bounded_memory(openssl: str, tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    plain = tmp_path / "big.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("big.bin", bytes(size))
    source = tmp_path / "big.enc"
    files = ["-in", str(plain), "-out", str(source)]
    subprocess.run(
        [openssl, "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-k", KEY, *files], check=True
    )
    tracemalloc.start()
    try:
        decrypt_file(source, tmp_path / "out.zip", KEY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"peak {peak:,} bytes for a {size:,}-byte package"
    assert (tmp_path / "out.zip").stat().st_size == plain.stat().st_size
    assert source.stat().st_size > size + HEADER_BYTES


@pytest.mark.parametrize(
    "command",
    [
        ["packages", "decrypt", "mitre.enc", "--key", "k"],
        ["packages", "get", "mitre", "--key", "k"],
        ["packages", "sync", "packages", "--keys", "keys.yaml"],
    ],
)
def test_without_the_extra_decryption_says_how_to_install_it(
    tmp_path: Path, command: list[str]
) -> None:
    """A Python where `cryptography` cannot be imported: one line, exit 2, before any
    request (the API URL given answers nothing)."""
    (tmp_path / "mitre.enc").write_bytes(b"Salted__" + bytes(24))
    (tmp_path / "keys.yaml").write_text("mitre: k\n")
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from ectf_action.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "ECTF_TOKEN": "t", "ECTF_API_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-c", code, *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: decrypting attack packages needs the cryptography library: "
        "pip install 'ectf-action[packages]'\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.yaml", "mitre.enc"]
