"""The spool: a durable log per process, synced before append returns, claimed once it dies."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from leafwatch.storage.spool import SUFFIX, Spool, SpoolFile


def child(code: str, directory: Path) -> list[str]:
    """The command that runs `code` in a new Python process, with `directory` as `spool_dir`."""
    prelude = f"from pathlib import Path\nspool_dir = Path({str(directory)!r})\n"
    return [sys.executable, "-c", prelude + textwrap.dedent(code)]


def test_records_come_back_in_order_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for index in range(5):
        spool.append("prediction", f"id-{index}", {"n": index, "text": "é\n"})
    records = spool.own.pending(3)
    assert [(r.kind, r.key, r.body) for r in records] == [
        ("prediction", f"id-{index}", {"n": index, "text": "é\n"}) for index in range(3)
    ]
    spool.own.remove([records[0].seq, records[1].seq])
    assert [r.key for r in spool.own.pending(10)] == ["id-2", "id-3", "id-4"]
    assert spool.depth() == 3
    assert spool.find("prediction", "id-3") == {"n": 3, "text": "é\n"}
    assert spool.find("feedback", "id-3") is None
    assert spool.find("prediction", "id-0") is None


def test_an_empty_file_is_deleted_at_close_and_one_with_records_is_kept(tmp_path: Path) -> None:
    empty, kept = Spool(tmp_path), Spool(tmp_path)
    kept.append("feedback", "f1", {})
    empty.close()
    kept.close()
    assert sorted(tmp_path.iterdir()) == [
        kept.own.path,
        kept.own.path.with_name(kept.own.path.name + ".lock"),
    ]


def test_a_live_file_is_never_claimed_and_a_released_one_is_claimed_by_one(tmp_path: Path) -> None:
    first, second, third = Spool(tmp_path), Spool(tmp_path), Spool(tmp_path)
    first.append("prediction", "p1", {"n": 1})
    # Each spool sees the others' records, but may claim none while they are held.
    assert second.find("prediction", "p1") == {"n": 1}
    assert second.depth() == 1
    assert list(second.orphans()) == []
    first.close()  # as a process that stops with records left
    claims = list(second.orphans())
    assert [file.path for file in claims] == [first.own.path]
    assert list(third.orphans()) == [], "a claimed file is held by its claimer"
    [claimed] = claims
    assert [r.body for r in claimed.pending(10)] == [{"n": 1}]
    claimed.remove([r.seq for r in claimed.pending(10)])
    claimed.delete()
    assert not first.own.path.exists()
    assert list(third.orphans()) == []
    assert third.depth() == 0


def test_a_lock_file_without_its_spool_file_is_cleaned_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    stray = tmp_path / f"1-abc{SUFFIX}.lock"
    stray.write_bytes(b"")
    assert list(spool.orphans()) == []
    assert not stray.exists()


def test_a_killed_process_loses_no_record_it_appended(tmp_path: Path) -> None:
    """SIGKILL at any moment: every acknowledged record is there, in order, with no gap."""
    code = """
        import sys
        from leafwatch.storage.spool import Spool
        spool = Spool(spool_dir)
        index = 0
        while True:
            spool.append("prediction", f"id-{index}", {"n": index, "pad": "x" * 500})
            print(index, flush=True)
            index += 1
    """
    with subprocess.Popen(child(code, tmp_path), stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        acknowledged = [int(process.stdout.readline()) for _ in range(300)]
        os.kill(process.pid, signal.SIGKILL)
        acknowledged += [int(line) for line in process.stdout.read().split()]
    [orphan] = _claim_all(tmp_path)
    numbers = [record.body["n"] for record in orphan.pending(100_000)]
    assert numbers == list(range(len(numbers))), "in order, without a gap"
    assert len(numbers) >= len(acknowledged) == acknowledged[-1] + 1
    assert len(numbers) <= len(acknowledged) + 1  # at most the one being written


def _claim_all(directory: Path) -> list[SpoolFile]:
    files = [SpoolFile.claim(path) for path in directory.glob(f"*{SUFFIX}")]
    return [file for file in files if file is not None]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_append_syncs_the_log_to_disk_before_it_returns(tmp_path: Path) -> None:
    """The system calls themselves: an fsync (or fdatasync) of the spool's log after the write."""
    code = """
        import os
        from leafwatch.storage.spool import Spool
        spool = Spool(spool_dir)
        os.write(1, b"appending\\n")
        spool.append("prediction", "p1", {"n": 1})
        os.write(1, b"appended\\n")
    """
    trace = tmp_path / "trace.txt"
    command = ["strace", "-f", "-y", "-e", "trace=write,pwrite64,fsync,fdatasync", "-o", str(trace)]
    result = subprocess.run(
        [*command, *child(code, tmp_path / "spool")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    calls = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(calls) if '"appending\\n"' in line)
    end = next(i for i, line in enumerate(calls) if '"appended\\n"' in line)
    during = calls[start:end]
    written = [i for i, line in enumerate(during) if "write" in line and ".spool-wal>" in line]
    synced = [i for i, line in enumerate(during) if "sync(" in line and ".spool-wal>" in line]
    assert written, "\n".join(during)
    assert synced, "\n".join(during)
    assert synced[-1] > written[-1], "\n".join(during)
