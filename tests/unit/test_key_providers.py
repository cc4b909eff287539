"""Master key providers (vault/keys.py)."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from vault.errors import InvalidKeyMaterial, KeyUnavailable
from vault.keys import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyProvider,
    StaticKeyProvider,
    add_key_version,
    generate_key_file,
)

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
B1 = base64.b64encode(K1).decode()
B2 = base64.b64encode(K2).decode()


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "master.keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leaks(text: str, *keys: bytes) -> bool:
    """Whether ``text`` shows any of ``keys`` in a form a log reader could use."""
    forms = [
        f(k)
        for k in keys
        for f in (
            lambda k: base64.b64encode(k).decode(),
            lambda k: base64.b64encode(k).decode()[:16],
            lambda k: k.hex(),
            repr,
        )
    ]
    return any(form in text for form in forms)


# --- generate and read --------------------------------------------------------------------------


def test_generate_creates_a_private_file_with_version_1(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "master.keys"
    generate_key_file(path)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("1:")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    provider = FileKeyProvider(path)
    assert provider.current_version() == 1
    assert provider.versions() == [1]
    key = provider.get(1)
    assert len(key) == 32
    assert base64.b64decode(lines[0][2:]) == key


def test_generate_makes_a_new_key_each_time(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "a")
    generate_key_file(tmp_path / "b")
    assert FileKeyProvider(tmp_path / "a").get(1) != FileKeyProvider(tmp_path / "b").get(1)


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    generate_key_file(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_key_file(path)
    assert path.read_bytes() == before
    # nor through a dangling symlink
    link = tmp_path / "link.keys"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        generate_key_file(link)
    assert not (tmp_path / "nowhere").exists()


def test_generate_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_key_file(tmp_path / "master.keys")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "master.keys") == 0o600


def test_reads_versions_comments_and_blank_lines(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"# master keys\n\n1:{B1}\n  2 : {B2}  \n")
    provider = FileKeyProvider(path)
    assert provider.versions() == [1, 2]
    assert provider.current_version() == 2
    assert provider.get(1) == K1
    assert provider.get(2) == K2


def test_highest_version_is_current_whatever_the_order(tmp_path: Path) -> None:
    provider = FileKeyProvider(key_file(tmp_path, f"7:{B2}\n3:{B1}\n"))
    assert provider.versions() == [3, 7]
    assert provider.current_version() == 7


def test_unknown_version_is_unavailable(tmp_path: Path) -> None:
    provider = FileKeyProvider(key_file(tmp_path, f"1:{B1}\n"))
    with pytest.raises(KeyUnavailable) as info:
        provider.get(2)
    assert info.value.code == "key_unavailable"
    assert info.value.status == 503
    assert "version 2" in str(info.value)
    assert not leaks(str(info.value), K1)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o601])
def test_refuses_a_file_others_can_reach(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, f"1:{B1}\n", mode)
    with pytest.raises(InvalidKeyMaterial) as info:
        FileKeyProvider(path)
    message = str(info.value)
    assert str(path) in message
    assert "0600" in message
    assert info.value.code == "invalid_key_material"
    assert not leaks(message, K1)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    assert FileKeyProvider(key_file(tmp_path, f"1:{B1}\n", mode)).get(1) == K1


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyMaterial, match="nothing-here"):
        FileKeyProvider(tmp_path / "nothing-here")


SHORT = base64.b64encode(K1[:31]).decode()
BAD_LINES = {
    "no colon": B1,
    "no version": f":{B1}",
    "version zero": f"0:{B1}",
    "negative version": f"-1:{B1}",
    "version not a number": f"one:{B1}",
    "bad base64": f"1:{B1[:-3]}!!=",
    "short key": f"1:{SHORT}",
    "long key": f"1:{base64.b64encode(K1 + b'x').decode()}",
    "empty key": "1:",
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_bad_lines_name_file_and_line_not_the_key(tmp_path: Path, case: str) -> None:
    path = key_file(tmp_path, f"# header\n2:{B2}\n{BAD_LINES[case]}\n")
    with pytest.raises(InvalidKeyMaterial) as info:
        FileKeyProvider(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert not leaks(message, K1, K2, K1[:31], K1 + b"x")


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"1:{B1}\n1:{B2}\n")
    with pytest.raises(InvalidKeyMaterial, match=r"line 2.*appears twice"):
        FileKeyProvider(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyMaterial, match="holds no key"):
        FileKeyProvider(key_file(tmp_path, "# nothing yet\n"))


# --- environment --------------------------------------------------------------------------------


def test_env_entries() -> None:
    provider = EnvKeyProvider(f"1:{B1}, 2:{B2}")
    assert provider.versions() == [1, 2]
    assert provider.current_version() == 2
    assert provider.get(1) == K1
    assert provider.get(2) == K2
    assert EnvKeyProvider(f"1:{B1},").versions() == [1]  # a trailing comma is harmless


@pytest.mark.parametrize("case", BAD_LINES)
def test_env_errors_name_the_variable(case: str) -> None:
    with pytest.raises(InvalidKeyMaterial) as info:
        EnvKeyProvider(f"2:{B2},{BAD_LINES[case]}", variable="KHO_TEST_KEYS")
    message = str(info.value)
    assert "KHO_TEST_KEYS" in message
    assert "entry 2" in message
    assert not leaks(message, K1, K2, K1[:31], K1 + b"x")


def test_env_empty_or_duplicate() -> None:
    with pytest.raises(InvalidKeyMaterial, match="KHO_MASTER_KEYS holds no key"):
        EnvKeyProvider("")
    with pytest.raises(InvalidKeyMaterial, match=r"KHO_MASTER_KEYS, entry 2.*twice"):
        EnvKeyProvider(f"1:{B1},1:{B2}")


def test_static_provider_checks_keys() -> None:
    assert StaticKeyProvider({1: K1}).get(1) == K1
    with pytest.raises(InvalidKeyMaterial):
        StaticKeyProvider({})
    with pytest.raises(InvalidKeyMaterial):
        StaticKeyProvider({1: K1[:16]})
    with pytest.raises(InvalidKeyMaterial):
        StaticKeyProvider({0: K1})


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_adds_a_version_and_keeps_the_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    generate_key_file(path)
    first = FileKeyProvider(path)
    k1 = first.get(1)
    assert add_key_version(path) == 2
    assert add_key_version(path) == 3
    assert mode_of(path) == 0o600
    rotated = FileKeyProvider(path)
    assert rotated.versions() == [1, 2, 3]
    assert rotated.current_version() == 3
    assert rotated.get(1) == k1
    assert len({rotated.get(v) for v in (1, 2, 3)}) == 3
    # a running provider sees the new version after reload
    assert first.current_version() == 1
    first.reload()
    assert first.current_version() == 3
    assert first.get(1) == k1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rotation_keeps_comments_and_a_missing_final_newline(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"# prod keys\n4:{B1}")
    assert add_key_version(path) == 5
    text = path.read_text()
    assert text.startswith(f"# prod keys\n4:{B1}\n5:")
    assert FileKeyProvider(path).get(4) == K1


def test_rotation_refuses_an_unsafe_or_broken_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"1:{B1}\n", 0o644)
    with pytest.raises(InvalidKeyMaterial, match="0600"):
        add_key_version(path)
    path.chmod(0o600)
    path.write_text(f"1:{B1}\nbroken\n")
    with pytest.raises(InvalidKeyMaterial, match="line 2"):
        add_key_version(path)
    assert path.read_text() == f"1:{B1}\nbroken\n"


def test_concurrent_rotations_do_not_lose_a_version(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    generate_key_file(path)
    results: list[int] = []
    lock = threading.Lock()

    def rotate() -> None:
        version = add_key_version(path)
        with lock:
            results.append(version)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(2, 10))
    assert FileKeyProvider(path).versions() == list(range(1, 10))


# --- no key material anywhere -------------------------------------------------------------------


def test_no_key_bytes_in_repr_or_str(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"1:{B1}\n2:{B2}\n")
    providers: list[KeyProvider] = [
        FileKeyProvider(path),
        EnvKeyProvider(f"1:{B1},2:{B2}"),
        StaticKeyProvider({1: K1, 2: K2}),
    ]
    for provider in providers:
        assert isinstance(provider, KeyProvider)
        for text in (repr(provider), str(provider), f"{provider!r}", format(provider)):
            assert not leaks(text, K1, K2), text
            assert "versions=[1, 2]" in text
    assert str(path) in repr(providers[0])
    assert "KHO_MASTER_KEYS" in repr(providers[1])
