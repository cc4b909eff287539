"""The erasure journal (``storage/erasures.py``, ADR 0009): whole, fsync'd lines appended by
threads and processes at once, the existing erasure-list format, and a loud failure when the file
cannot be written. Also the ``KHO_ERASURE_LIST`` setting."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from common.errors import ConfigurationError, ServiceUnavailable
from common.settings import Settings
from storage.erasures import (
    ERASURE_LIST_HEADER,
    Erasure,
    ErasureJournal,
    ErasureJournalUnavailable,
    ErasureListDamaged,
    FileErasureJournal,
    read_erasure_list,
)

ROOT = Path(__file__).resolve().parents[2]

# One process appending N entries of its own, tagged by a letter in the time field.
_CHILD = """
import sys, uuid
from pathlib import Path
from storage.erasures import Erasure, FileErasureJournal
journal = FileErasureJournal(Path(sys.argv[1]))
for n in range(int(sys.argv[2])):
    journal.append(Erasure("document", uuid.uuid4(), f"{sys.argv[3]}-{n:05d}"))
"""


def entry_lines(path: Path) -> list[str]:
    return [
        line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_appends_are_lines_of_the_erasure_list_format(tmp_path: Path) -> None:
    path = tmp_path / "erasures.log"
    journal: ErasureJournal = FileErasureJournal(path)
    assert journal.entries() == []
    first = Erasure("account", uuid.uuid4(), "2026-11-30T08:00:00+00:00")
    second = Erasure("document", uuid.uuid4(), "2026-11-30T08:00:01.5+00:00")
    journal.append(first)
    journal.append(second)
    text = path.read_text()
    assert text == (
        ERASURE_LIST_HEADER
        + f"account {first.id} 2026-11-30T08:00:00+00:00\n"
        + f"document {second.id} 2026-11-30T08:00:01.5+00:00\n"
    )
    assert journal.entries() == [first, second]
    assert read_erasure_list(path) == [first, second]
    assert path.stat().st_mode & 0o777 == 0o600


def test_merge_only_appends_what_is_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "erasures.log"
    journal = FileErasureJournal(path)
    known = Erasure("document", uuid.uuid4(), "2026-11-30T08:00:00+00:00")
    journal.append(known)
    before = path.read_bytes()
    late = Erasure("account", uuid.uuid4(), "2026-11-30T09:00:00+00:00")
    early = Erasure("account", uuid.uuid4(), "2026-11-30T07:00:00+00:00")
    assert journal.merge([late, known, early, late]) == (2, 3)
    assert path.read_bytes().startswith(before)  # never rewritten
    assert journal.entries() == [known, early, late]
    assert journal.merge([known, early, late]) == (0, 3)
    assert path.read_bytes().count(b"\n") == before.count(b"\n") + 2


def test_a_torn_last_line_never_swallows_the_next_entry(tmp_path: Path) -> None:
    path = tmp_path / "erasures.log"
    journal = FileErasureJournal(path)
    journal.append(Erasure("account", uuid.uuid4(), "t1"))
    with path.open("a") as handle:
        handle.write("document 1234")  # a write cut short by a crash: never acknowledged
    entry = Erasure("document", uuid.uuid4(), "t2")
    journal.append(entry)
    lines = path.read_text().splitlines()
    assert lines[-2:] == ["document 1234", entry.line()]
    # A damaged line is reported with its number, never silently skipped.
    with pytest.raises(ErasureListDamaged, match=r"line 4: expected"):
        journal.entries()


def test_threads_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "erasures.log"
    journal = FileErasureJournal(path)
    threads, each = 8, 60
    written: list[Erasure] = []
    lock = threading.Lock()

    def work(tag: int) -> None:
        for n in range(each):
            entry = Erasure("account" if n % 2 else "document", uuid.uuid4(), f"t{tag}-{n:03d}")
            journal.append(entry)
            with lock:
                written.append(entry)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    entries = journal.entries()
    assert len(entries) == threads * each
    assert set(entries) == set(written)
    assert path.read_text().count("# Kho erasure list") == 1
    # Each thread's lines are in the order it wrote them.
    for tag in range(threads):
        mine = [e.when for e in entries if e.when.startswith(f"t{tag}-")]
        assert mine == sorted(mine) and len(mine) == each


def test_two_processes_and_threads_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "erasures.log"
    each = 300
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(each), tag], cwd=ROOT, env=env
        )
        for tag in ("p", "q")
    ]
    journal = FileErasureJournal(path)
    for n in range(each):
        journal.append(Erasure("account", uuid.uuid4(), f"r-{n:05d}"))
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    lines = entry_lines(path)
    assert len(lines) == 3 * each
    entries = journal.entries()  # every line parses: none torn or interleaved
    assert len({e.id for e in entries}) == 3 * each
    for tag in ("p", "q", "r"):
        mine = [e.when for e in entries if e.when.startswith(tag + "-")]
        assert mine == [f"{tag}-{n:05d}" for n in range(each)]
    assert path.read_text().count("# Kho erasure list") == 1


def test_an_unwritable_journal_fails_loudly_and_creates_nothing(tmp_path: Path) -> None:
    entry = Erasure("document", uuid.uuid4(), "t")
    # A directory where the file should be.
    directory = tmp_path / "erasures.log"
    directory.mkdir()
    with pytest.raises(ErasureJournalUnavailable) as failed:
        FileErasureJournal(directory).append(entry)
    assert isinstance(failed.value, ServiceUnavailable)
    assert failed.value.status == 503
    assert failed.value.code == "erasure_journal_unavailable"
    assert isinstance(failed.value.__cause__, OSError)
    assert list(directory.iterdir()) == []
    # A directory that does not exist (an unmounted volume): never created.
    missing = tmp_path / "not-mounted" / "erasures.log"
    with pytest.raises(ErasureJournalUnavailable):
        FileErasureJournal(missing).append(entry)
    assert not missing.parent.exists()
    # A full disk (tests may run as root, so file permissions would not stop a write).
    with pytest.raises(ErasureJournalUnavailable) as full:
        FileErasureJournal(Path("/dev/full")).append(entry)
    assert isinstance(full.value.__cause__, OSError)
    with pytest.raises(ErasureJournalUnavailable):
        FileErasureJournal(directory).merge([entry])


def test_the_setting_defaults_under_the_data_dir_and_is_required_in_production(
    tmp_path: Path,
) -> None:
    development = Settings(data_dir=tmp_path / "var")
    assert development.erasure_list is None
    assert development.effective_erasure_list == tmp_path / "var" / "erasures.log"
    chosen = Settings(data_dir=tmp_path / "var", erasure_list=tmp_path / "journal" / "e.log")
    assert chosen.effective_erasure_list == tmp_path / "journal" / "e.log"
    production: dict[str, object] = {
        "env": "production",
        "database_url": "postgresql+psycopg://h/db",
        "object_store": "s3",
        "s3_endpoint": "127.0.0.1:1",
        "s3_access_key": "a",
        "s3_secret_key": "b",
        "eid_simulator": False,
        "eid_discovery_url": "https://eid.example/.well-known/openid-configuration",
        "public_url": "https://kho.example.vn",
        "master_key_file": "/etc/kho/master.key",
    }
    with pytest.raises(ConfigurationError) as refused:
        Settings(**production).check_production()  # type: ignore[arg-type]
    message = str(refused.value)
    assert message.startswith("KHO_ERASURE_LIST:") and "\n" not in message
    Settings(**production, erasure_list="/srv/journal/erasures.log").check_production()  # type: ignore[arg-type]
