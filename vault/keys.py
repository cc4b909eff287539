"""Master key providers.

The master key is the root of the key hierarchy: it wraps each owner's vault key, which wraps each
document version's data key (see ``docs/encrypted-object-format.md``). It is versioned so that it
can be rotated: new wraps use :meth:`KeyProvider.current_version`, old wraps name the version they
were made with, and rotation rewraps vault keys without touching any object.

Two providers are given here for development and simple deployments (a key file, an environment
variable). A KMS or HSM plugs in by implementing :class:`KeyProvider`; nothing else in Kho needs to
change. Key material never appears in ``repr``, ``str``, logs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from vault.crypto import KEY_SIZE, new_key
from vault.errors import InvalidKeyMaterial, KeyUnavailable

__all__ = [
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "StaticKeyProvider",
    "add_key_version",
    "generate_key_file",
]


@runtime_checkable
class KeyProvider(Protocol):
    """Where master keys come from: a file, the environment, or later a KMS or HSM.

    An implementation backed by a KMS or HSM may never release the key itself; it then needs the
    vault to call its own wrap/unwrap, which is a change to this protocol made when such a backend
    is added. Until then every implementation returns 32-byte keys.
    """

    def current_version(self) -> int:
        """The version new wraps are made with (the highest one)."""
        ...

    def get(self, version: int) -> bytes:
        """The 32-byte master key of ``version``; :class:`KeyUnavailable` if unknown/unreachable."""
        ...

    def versions(self) -> list[int]:
        """Every available version, ascending."""
        ...


class StaticKeyProvider:
    """Master keys held in memory, e.g. parsed from a file or variable, or built by a test."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise InvalidKeyMaterial(detail_en="no master key given")
        for version, key in keys.items():
            if version < 1 or len(key) != KEY_SIZE:
                raise InvalidKeyMaterial(
                    detail_en=f"master key version {version} is invalid (need {KEY_SIZE} bytes)"
                )
        self._keys = dict(sorted(keys.items()))

    def current_version(self) -> int:
        return max(self._keys)

    def get(self, version: int) -> bytes:
        try:
            return self._keys[version]
        except KeyError:
            raise KeyUnavailable(
                detail_en=f"master key version {version} is not available"
            ) from None

    def versions(self) -> list[int]:
        return list(self._keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(versions={self.versions()})"


def _parse_entry(entry: str, where: str) -> tuple[int, bytes]:
    """One ``<version>:<base64 of 32 bytes>`` entry; errors name ``where``, never the entry."""
    version_text, sep, encoded = entry.partition(":")
    version_text = version_text.strip()
    if not sep or not version_text.isascii() or not version_text.isdigit():
        raise InvalidKeyMaterial(detail_en=f"{where}: expected '<version>:<base64 key>'")
    version = int(version_text)
    if version < 1:
        raise InvalidKeyMaterial(detail_en=f"{where}: key version must be 1 or more")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyMaterial(detail_en=f"{where}: key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise InvalidKeyMaterial(detail_en=f"{where}: key must be {KEY_SIZE} bytes")
    return version, key


def _add(keys: dict[int, bytes], version: int, key: bytes, where: str) -> None:
    if version in keys:
        raise InvalidKeyMaterial(detail_en=f"{where}: key version {version} appears twice")
    keys[version] = key


def _encode_entry(version: int, key: bytes) -> str:
    return f"{version}:{base64.b64encode(key).decode('ascii')}"


def _read_key_file(path: Path) -> tuple[bytes, dict[int, bytes]]:
    """Read and parse a key file after checking, on the opened file, that only its owner can read
    it. Returns the raw content and the keys; blank lines and ``#`` comment lines are ignored.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidKeyMaterial(detail_en=f"cannot open key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidKeyMaterial(detail_en=f"key file {path} is not a regular file")
        if stat.S_IMODE(info.st_mode) & ~0o600:
            raise InvalidKeyMaterial(
                detail_en=(
                    f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
                    "it must be 0600 or stricter (chmod 600)"
                )
            )
        raw = file.read()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidKeyMaterial(detail_en=f"key file {path} is not ASCII text") from None
    keys: dict[int, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"key file {path}, line {number}"
        version, key = _parse_entry(stripped, where)
        _add(keys, version, key, where)
    if not keys:
        raise InvalidKeyMaterial(detail_en=f"key file {path} holds no key")
    return raw, keys


class FileKeyProvider(StaticKeyProvider):
    """Master keys from a file of ``<version>:<base64 32 bytes>`` lines; the highest is current.

    The file must not be accessible to group or others (mode 0600 or stricter). It is read when
    the provider is built; call :meth:`reload` (or build a new one) after a rotation.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        super().__init__(_read_key_file(self.path)[1])

    def reload(self) -> None:
        """Read the file again (after a rotation by another process)."""
        self._keys = dict(sorted(_read_key_file(self.path)[1].items()))

    def __repr__(self) -> str:
        return f"FileKeyProvider(path={str(self.path)!r}, versions={self.versions()})"


class EnvKeyProvider(StaticKeyProvider):
    """Master keys from a variable's value: ``<version>:<base64>`` entries separated by commas."""

    def __init__(self, value: str, variable: str = "KHO_MASTER_KEYS") -> None:
        self.variable = variable
        keys: dict[int, bytes] = {}
        entries = [entry.strip() for entry in value.split(",")]
        for number, entry in enumerate(entries, start=1):
            if not entry:
                continue
            where = f"{variable}, entry {number}"
            version, key = _parse_entry(entry, where)
            _add(keys, version, key, where)
        if not keys:
            raise InvalidKeyMaterial(detail_en=f"{variable} holds no key")
        super().__init__(keys)

    def __repr__(self) -> str:
        return f"EnvKeyProvider(variable={self.variable!r}, versions={self.versions()})"


# --- writing key files --------------------------------------------------------------------------


def _write_private_temp(directory: Path, name: str, content: bytes) -> Path:
    """Write ``content`` to a new 0600 file beside the target and flush it to disk."""
    temp = directory / f".{name}.{os.urandom(8).hex()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb", closefd=False) as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_key_file(path: Path) -> None:
    """Create ``path`` (mode 0600, parents 0700) holding one new version-1 master key.

    The file appears atomically, complete or not at all: it is written to a temporary file in the
    same directory and then hard-linked into place, which refuses to replace an existing file
    (:class:`FileExistsError`).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"key file {path} already exists; refusing to overwrite it")
    content = (_encode_entry(1, new_key()) + "\n").encode("ascii")
    temp = _write_private_temp(path.parent, path.name, content)
    try:
        os.link(temp, path)
    except FileExistsError:
        raise FileExistsError(f"key file {path} already exists; refusing to overwrite it") from None
    finally:
        temp.unlink(missing_ok=True)
    _sync_directory(path.parent)


@contextlib.contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    # A separate lock file: the key file itself is replaced by each rotation, so a lock held on
    # its old inode would not stop a second rotation that opened the new one.
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_key_version(path: Path) -> int:
    """Rotate: append a new master key version to the key file and return its number.

    Old versions stay in the file (vault keys wrapped with them must remain readable until they
    are rewrapped). The new file replaces the old one atomically; concurrent rotations are
    serialised by a lock file beside it.
    """
    path = Path(path)
    with _rotation_lock(path):
        old, keys = _read_key_file(path)  # checks permissions and format before any change
        version = max(keys) + 1
        if old and not old.endswith(b"\n"):
            old += b"\n"
        content = old + (_encode_entry(version, new_key()) + "\n").encode("ascii")
        temp = _write_private_temp(path.parent, path.name, content)
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _sync_directory(path.parent)
    return version
