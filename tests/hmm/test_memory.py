import pytest

from hmm import memory
from hmm.errors import InvalidInput


@pytest.fixture
def machine(monkeypatch):
    """A machine with 23.1 GB available and no container limit."""
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 23_100_000_000)
    monkeypatch.setattr(memory, "_cgroup_headroom", lambda: None)


def test_check_fits_passes_what_fits(machine):
    memory.check_fits(23_100_000_000, "--points 10", "--points 10")


def test_check_fits_refuses_with_one_line_naming_the_largest(machine):
    with pytest.raises(InvalidInput) as err:
        memory.check_fits(40_000_000_000, "--depth 30", "--depth 21")
    assert str(err.value) == (
        "--depth 30 needs 40.0 GB, this machine has 23.1 GB available; "
        "the largest that fits is --depth 21"
    )


def test_check_fits_hands_the_available_bytes_to_a_largest_function(machine):
    seen = []

    def largest(available: int) -> str:
        seen.append(available)
        return f"--points {available // 16}"

    with pytest.raises(InvalidInput, match=r"the largest that fits is --points 1443750000$"):
        memory.check_fits(10**12, "--points 62500000000", largest)
    assert seen == [23_100_000_000]


def test_container_limit_caps_the_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 64 * 10**9)
    monkeypatch.setattr(memory, "_CGROUP", tmp_path)
    (tmp_path / "memory.max").write_text("8000000000\n")
    (tmp_path / "memory.current").write_text("3000000000\n")
    (tmp_path / "memory.stat").write_text("anon 2000000000\ninactive_file 500000000\n")
    assert memory.available_memory() == 8_000_000_000 - 3_000_000_000 + 500_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.available_memory() == 64 * 10**9


def test_unknown_memory_refuses_nothing(monkeypatch):
    for reader in ("_meminfo_available", "_sysconf_available", "_cgroup_headroom"):
        monkeypatch.setattr(memory, reader, lambda: None)
    assert memory.available_memory() is None
    memory.check_fits(10**18, "anything", "anything")


def test_meminfo_reader_reads_kilobytes(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   24001152 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    assert memory._meminfo_available() == 24001152 * 1024
