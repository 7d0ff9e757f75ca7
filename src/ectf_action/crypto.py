"""Attack packages as the organizers encrypt them, and as teams decrypt them:

    openssl enc -d -aes-256-cbc -pbkdf2 -salt -k KEY -in TEAM.enc -out TEAM.zip

The file is `Salted__`, an 8-byte salt, then AES-256-CBC with PKCS#7 padding. `-k` passes
the key as a password: PBKDF2-HMAC-SHA256 over its UTF-8 bytes and the salt, 10,000
iterations (openssl's `-pbkdf2` default), gives 48 bytes, the AES key and then the IV.

AES comes from `cryptography` (PyCA), an optional extra: the action never decrypts, so
its image goes without it. Everything streams in chunks, so a large package never sits
in memory. A wrong key shows as bad padding, or as bytes that are not a zip; either way
the result is refused and nothing is left where the zip would go.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import EXIT_INVALID_INPUT, EctfError
from .text import clean

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes
    from cryptography.hazmat.primitives.padding import PKCS7, PaddingContext

MAGIC = b"Salted__"
SALT_BYTES = 8
HEADER_BYTES = len(MAGIC) + SALT_BYTES
PBKDF2_ITERATIONS = 10_000  # openssl enc -pbkdf2's default
KEY_BYTES = 32
IV_BYTES = 16
BLOCK_BYTES = 16
CHUNK_BYTES = 1024 * 1024
EXTRA_HINT = "pip install 'ectf-action[packages]'"


class ExtraMissing(EctfError):
    """Decryption needs the optional `cryptography` library, which is not installed."""

    exit_code = EXIT_INVALID_INPUT
    title = "Decryption unavailable"

    def __init__(self) -> None:
        super().__init__(f"decrypting attack packages needs the cryptography library: {EXTRA_HINT}")


class DecryptError(EctfError):
    """The file cannot be decrypted with this key: a wrong key, or not a package."""

    exit_code = EXIT_INVALID_INPUT
    title = "Cannot decrypt"


@dataclass(frozen=True)
class Decrypted:
    path: Path
    size: int


def check_available() -> None:
    """Raise ExtraMissing now, before any request, when decryption could not run later."""
    _pkcs7()
    _aes_cbc(bytes(KEY_BYTES), bytes(IV_BYTES))


def derive_key_iv(key: str, salt: bytes) -> tuple[bytes, bytes]:
    """The AES key and IV that `openssl enc -pbkdf2 -k KEY` derives for *salt*."""
    material = hashlib.pbkdf2_hmac(
        "sha256", key.encode("utf-8"), salt, PBKDF2_ITERATIONS, KEY_BYTES + IV_BYTES
    )
    return material[:KEY_BYTES], material[KEY_BYTES:]


def decrypt_stream(
    source: BinaryIO, dest: BinaryIO, key: str, *, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Decrypt *source* into *dest*; return the bytes written. DecryptError when it is not
    openssl's format, is cut short, or the padding is wrong (the usual sign of a wrong
    key). What was written before the error is garbage: callers write to a temp file."""
    header = source.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        if header.startswith(b"PK\x03\x04"):
            raise DecryptError("it is already a zip, not an encrypted package")
        raise DecryptError(
            "it is not an encrypted package (no Salted__ header, as openssl enc -salt writes)"
        )
    cipher_key, iv = derive_key_iv(key, header[len(MAGIC) :])
    decryptor, unpadder = _decryption(cipher_key, iv)
    encrypted = written = 0
    while chunk := source.read(chunk_bytes):
        encrypted += len(chunk)
        written += _write(dest, unpadder.update(decryptor.update(chunk)))
    if encrypted == 0 or encrypted % BLOCK_BYTES:
        raise DecryptError(
            f"it is cut short or damaged: {encrypted:,} encrypted bytes are not a whole "
            f"number of {BLOCK_BYTES}-byte AES blocks"
        )
    written += _write(dest, decryptor.finalize())
    try:
        written += _write(dest, unpadder.finalize())
    except ValueError:
        raise DecryptError("wrong key: the decrypted padding is invalid") from None
    return written


def encrypt_stream(
    source: BinaryIO,
    dest: BinaryIO,
    key: str,
    *,
    salt: bytes | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Encrypt as `openssl enc -aes-256-cbc -pbkdf2 -salt -k KEY` does (a fresh random
    salt unless one is given); return the bytes written."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    cipher_key, iv = derive_key_iv(key, salt)
    encryptor, padder = _encryption(cipher_key, iv)
    written = _write(dest, MAGIC + salt)
    while chunk := source.read(chunk_bytes):
        written += _write(dest, encryptor.update(padder.update(chunk)))
    written += _write(dest, encryptor.update(padder.finalize()))
    written += _write(dest, encryptor.finalize())
    return written


def decrypt_file(source: Path, dest: Path, key: str) -> Decrypted:
    """Decrypt *source* to *dest* (a zip), replacing it only with a readable zip: the
    bytes go to a temp file in *dest*'s folder, renamed over *dest* once checked."""
    check_available()
    if not key:
        raise DecryptError("the key is empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own (two runs never share it), created as openssl would: umask applies
    temp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        with temp.open("xb") as out, source.open("rb") as encrypted:
            size = decrypt_stream(encrypted, out, key)
        _check_zip(temp)
        os.replace(temp, dest)
    except DecryptError as exc:
        raise DecryptError(f"cannot decrypt {clean(source.name)}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    return Decrypted(dest, size)


def encrypt_file(source: Path, dest: Path, key: str, *, salt: bytes | None = None) -> int:
    """Encrypt *source* to *dest* as openssl would (the simulator serves these)."""
    with source.open("rb") as plain, dest.open("wb") as out:
        return encrypt_stream(plain, out, key, salt=salt)


def _check_zip(path: Path) -> None:
    """Decrypted with the wrong key, padding passes about once in 256 tries; the bytes are
    then noise, which has no zip directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DecryptError(f"wrong key: the decrypted bytes are not a zip ({exc})") from None


def _write(dest: BinaryIO, data: bytes) -> int:
    if data:
        dest.write(data)
    return len(data)


def _aes_cbc(cipher_key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        raise ExtraMissing() from None
    return Cipher(algorithms.AES(cipher_key), modes.CBC(iv))


def _pkcs7() -> PKCS7:
    try:
        from cryptography.hazmat.primitives.padding import PKCS7
    except ImportError:
        raise ExtraMissing() from None
    return PKCS7(BLOCK_BYTES * 8)


def _decryption(cipher_key: bytes, iv: bytes) -> tuple[CipherContext, PaddingContext]:
    return _aes_cbc(cipher_key, iv).decryptor(), _pkcs7().unpadder()


def _encryption(cipher_key: bytes, iv: bytes) -> tuple[CipherContext, PaddingContext]:
    return _aes_cbc(cipher_key, iv).encryptor(), _pkcs7().padder()
