"""hrwsi.cli.logs: what `hrwsi logs` prints of a log (without a database: the copying alone)."""

from __future__ import annotations

from hrwsi.cli import logs


def test_a_followed_log_cut_to_its_cap_goes_on_from_the_line_that_says_how_many_bytes_were_dropped(tmp_path, capsys):
    path = tmp_path / "job.log"
    head = b"".join(b"line %d\n" % n for n in range(100))
    path.write_bytes(head + b"".join(b"line %d\n" % n for n in range(100, 2000)))
    offset = logs._copy(path, 0, None)
    assert offset == path.stat().st_size
    capsys.readouterr()
    cap_line = (b"[hrwsi supervisor 2026-12-06T12:00:00.000000+00:00] the log reached its cap of 4096 bytes "
                b"(HRWSI_JOB_LOG_MAX_BYTES): 9000 bytes of the routine's output were dropped here\n")
    tail = b"".join(b"line %d\n" % n for n in range(1990, 2010))
    path.write_bytes(head + cap_line + tail)  # cut in place by the supervisor, then written on
    offset = logs._copy(path, offset, None)
    shown = capsys.readouterr()
    assert shown.out.encode() == cap_line + tail
    assert "the log reached its cap and was cut while followed" in shown.err
    assert offset == path.stat().st_size
