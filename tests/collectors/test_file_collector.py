"""The file collector with real files: values, scale, staleness, size, non-regular files."""

from __future__ import annotations

import os
import time

import pytest

from agent.catalog import MetricType
from agent.collectors.file import FileCollector
from agent.errors import CollectorError


def collect(path, mtype=MetricType.NUMBER, **kw):
    return FileCollector("f", path=str(path), metric="m", mtype=mtype, **kw).collect()[0].value


def test_reads_sysfs_style_and_textfile_values(tmp_path):
    temp = tmp_path / "temp"
    temp.write_text("48312\n")
    assert collect(temp, scale=0.001) == 48.312
    peers = tmp_path / "peers.json"
    peers.write_text('["10.0.0.2", "fd00::2"]')
    assert collect(peers, MetricType.IP_ADDRESS_LIST) == ("10.0.0.2", "fd00::2")
    services = tmp_path / "services"
    services.write_text("# written by a cron job\nsshd\nmosquitto\n")
    assert collect(services, MetricType.STRING_LIST) == ("sshd", "mosquitto")


def test_real_proc_file():
    assert collect("/proc/sys/kernel/pid_max") > 0


def test_stale_file_is_an_error(tmp_path):
    path = tmp_path / "value"
    path.write_text("1\n")
    old = time.time() - 3600
    os.utime(path, (old, old))
    with pytest.raises(CollectorError, match=r"is stale: last written 1h ago \(max_age 5m\)"):
        collect(path, max_age=300)
    assert collect(path, max_age=7200) == 1
    path.write_text("2\n")  # rewriting makes it fresh
    assert collect(path, max_age=300) == 2


def test_missing_too_large_and_bad_files(tmp_path):
    with pytest.raises(CollectorError, match="no such file"):
        collect(tmp_path / "nope")
    big = tmp_path / "big"
    big.write_text("1\n" * 1000)
    with pytest.raises(CollectorError, match="larger than max_size"):
        collect(big, MetricType.NUMBER_LIST, max_size=100)
    bad = tmp_path / "bad"
    bad.write_text("twelve\n")
    with pytest.raises(CollectorError, match=r"does not hold a number: line 1: 'twelve' is not a number"):
        collect(bad)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(CollectorError, match="not UTF-8"):
        collect(binary)


def test_fifo_and_directory_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CollectorError, match="not a regular file"):
        collect(fifo)
    with pytest.raises(CollectorError):
        collect(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("1")
    path.chmod(0)
    with pytest.raises(CollectorError, match="cannot open"):
        collect(path)
