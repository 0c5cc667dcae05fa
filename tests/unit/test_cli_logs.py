"""hrwsi.cli.logs: what `hrwsi logs` prints of a log (without a database: the copying alone)."""

from __future__ import annotations

import pytest

from hrwsi.cli import logs

CAP_LINE = (b"[hrwsi supervisor 2026-12-06T12:00:00.000000+00:00] the log reached its cap of 4096 bytes "
            b"(HRWSI_JOB_LOG_MAX_BYTES): 9000 bytes of the routine's output were dropped here\n")


def lines(first: int, last: int) -> bytes:
    return b"".join(b"line %d\n" % n for n in range(first, last))


def test_a_followed_log_cut_to_its_cap_goes_on_from_the_line_that_says_how_many_bytes_were_dropped(tmp_path, capsys):
    path = tmp_path / "job.log"
    path.write_bytes(lines(0, 2000))
    followed = logs._Followed()
    logs._copy(path, followed, None)
    assert followed.offset == path.stat().st_size
    capsys.readouterr()
    tail = lines(1990, 2010)
    path.write_bytes(lines(0, 100) + CAP_LINE + tail)  # cut in place by the supervisor, then written on
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert shown.out.encode() == CAP_LINE + tail
    assert "the log reached its cap and was cut while followed" in shown.err
    assert followed.offset == path.stat().st_size


def test_a_followed_log_cut_and_written_on_past_what_was_read_between_two_polls_goes_on_from_the_cap_line(
        tmp_path, capsys):
    # Found by review: a routine writing faster than about 75 MB/s regrows a log cut to its cap past the
    # follower's offset between two polls; judged by its size alone, the follower went on mid-line in other
    # output without saying so.
    path = tmp_path / "job.log"
    path.write_bytes(lines(0, 2000))
    followed = logs._Followed()
    logs._copy(path, followed, None)
    read = followed.offset
    capsys.readouterr()
    tail = lines(1990, 5000)
    path.write_bytes(lines(0, 100) + CAP_LINE + tail)
    assert path.stat().st_size > read, "longer than what was read"
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert shown.out.encode() == CAP_LINE + tail
    assert "the log reached its cap and was cut while followed" in shown.err


def test_a_second_cut_of_a_followed_log_whose_output_repeats_is_told_by_its_cap_line(tmp_path, capsys):
    # The bytes before the follower's offset are the same after this cut (the output repeats): the cap's
    # line, rewritten at each cut with the bytes dropped so far, tells it.
    path = tmp_path / "job.log"
    same = b"the same line\n" * 2000
    path.write_bytes(lines(0, 100) + CAP_LINE + same)
    followed = logs._Followed()
    logs._copy(path, followed, None)
    capsys.readouterr()
    again = CAP_LINE.replace(b"9000 bytes", b"9100 bytes").replace(b"12:00:00", b"12:00:01")  # (as long)
    path.write_bytes(lines(0, 100) + again + same + b"the same line\n" * 100)
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert shown.out.encode() == again + same + b"the same line\n" * 100
    assert "the log reached its cap and was cut while followed" in shown.err


def test_a_first_cut_of_a_followed_log_whose_output_repeats_exactly_is_told_by_the_cap_line_it_wrote(tmp_path, capsys):
    # Found by review: before the follower had read a cap's line, a cut was told only by the bytes it read
    # last; a log whose output repeats exactly, at the same alignment after the cut, was read on without the
    # notice, the dropped bytes unsaid. The cut wrote its cap's line where the follower had read: that tells it.
    same = b"the same line\n"
    path = tmp_path / "job.log"
    path.write_bytes(same * 2000)
    followed = logs._Followed()
    logs._copy(path, followed, None)
    read = followed.offset
    capsys.readouterr()
    marker = CAP_LINE[:-1] + b" " * (-len(CAP_LINE) % len(same)) + b"\n"  # (the alignment kept)
    cut = same * 100 + marker + same * 1200
    path.write_bytes(cut + same * (2000 - len(cut) // len(same) + 10))  # cut in place, then written on past `read`
    assert path.stat().st_size > read and path.read_bytes()[read - 4096:read] == (same * 2000)[read - 4096:read]
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert "the log reached its cap and was cut while followed" in shown.err
    assert shown.out.encode() == path.read_bytes()[len(same) * 100:], "from the cap's line on"
    logs._copy(path, followed, None)  # (and read on from there, the cap's line noted: no second notice)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("cap_line", [CAP_LINE, b"grep says: " + CAP_LINE], ids=["the supervisor's", "a routine's quoting it"])
def test_a_log_written_on_without_a_cut_is_followed_from_where_it_was_read(tmp_path, capsys, cap_line):
    # (a routine's own line that quotes the cap's line is not one: a first cut is told by the supervisor's)
    path = tmp_path / "job.log"
    path.write_bytes(lines(0, 100) + cap_line + lines(100, 200))
    followed = logs._Followed()
    logs._copy(path, followed, None)
    capsys.readouterr()
    with path.open("ab") as log:
        log.write(lines(200, 300))
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert shown.out.encode() == lines(200, 300) and shown.err == ""


def test_the_look_for_a_first_cut_reads_the_log_again_at_most_once_per_period(tmp_path, monkeypatch):
    # Found by review: the look reads the log again up to where it was followed (tens of milliseconds at
    # 100 MiB: 20-75 ms); made at every poll of a chatty routine's log, it would take 4-15 % of a core.
    path = tmp_path / "job.log"
    path.write_bytes(lines(0, 100))
    followed = logs._Followed()
    looks = []
    real_look = logs._supervisor_cap_line_before
    monkeypatch.setattr(logs, "_supervisor_cap_line_before", lambda *args: looks.append(args) or real_look(*args))
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    logs._copy(path, followed, None)
    for poll in range(1, 7):
        with path.open("ab") as log:
            log.write(lines(100 * poll, 100 * poll + 100))
        now[0] += logs.FOLLOW_POLL_S
        logs._copy(path, followed, None)
    assert len(looks) == 1, "six polls of a changing log within 3 s: one look"
    now[0] += logs.CUT_LOOK_EVERY_S
    with path.open("ab") as log:
        log.write(lines(900, 1000))
    logs._copy(path, followed, None)
    assert len(looks) == 2, "and the next once the period is over"


def test_a_first_cut_of_a_log_whose_output_repeats_exactly_is_told_at_the_next_poll(tmp_path, capsys, monkeypatch):
    # Known fault: the look that tells such a cut (a cap's line where the follower had read) ran at most every
    # CUT_LOOK_EVERY_S, so the notice came up to 5 s late, after output that followed the cut. Where the cut writes
    # its line is known from the cap (the head's end, a quarter of it in): that window is read at every poll.
    # No clock moves here: the periodic look has run once already, and only the poll after the cut may tell it.
    monkeypatch.setattr(logs.time, "monotonic", lambda: 1000.0)
    cap, same = 1 << 18, b"the same line\n"
    path = tmp_path / "job.log"
    path.write_bytes(same * 100)
    followed = logs._Followed(cap)
    logs._copy(path, followed, None)
    with path.open("ab") as log:  # (a poll that looks: the periodic look is spent)
        log.write(same * (cap // len(same) - 100))
    logs._copy(path, followed, None)
    read = followed.offset
    capsys.readouterr()
    head_end = (cap // 4) // len(same) * len(same)  # (the last line start before a quarter of the cap)
    marker = CAP_LINE[:-1] + b" " * (-len(CAP_LINE) % len(same)) + b"\n"  # (the alignment kept)
    cut = (same * (cap // len(same)))[:head_end] + marker
    cut += same * ((read - len(cut)) // len(same) + 20)  # (then written on past `read`, exactly as before)
    path.write_bytes(cut)
    assert path.read_bytes()[read - 4096:read] == (same * (cap // len(same)))[read - 4096:read]
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert "the log reached its cap and was cut while followed" in shown.err
    assert shown.out.encode() == cut[head_end:], "from the cap's line on"


# (output without a line break near a quarter of the cap is cut where it falls, mid-line, exactly at a quarter of the
# cap: the looks take a line there for the supervisor's, as at a line's start)
@pytest.mark.parametrize("line", [b"the same line\n", b"x" * 1000 + b"\n", b"a" * 50_000 + b"\n"])
def test_the_window_a_follower_reads_at_every_poll_is_where_the_supervisors_first_cut_writes_its_line(tmp_path, line):
    # (the supervisor's own CappedLog cuts the log: the follower's guess of where is checked against it)
    import os

    from hrwsi.backends.local_supervisor import CappedLog
    cap = 1 << 18
    path = tmp_path / "job.log"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        capped = CappedLog(descriptor, cap)
        while not capped.dropped:
            capped.write(line)
    finally:
        os.close(descriptor)
    followed = logs._Followed(cap)
    with path.open("rb") as log:
        followed.offset = cap  # (read up to the cap before the cut)
        assert followed.was_cut(log.fileno())
        found = logs._supervisor_cap_line_before(log.fileno(), followed.head + 1,
                                                 followed.head - logs.HEAD_LINE_SEARCH, logs.CAP_WORDS_AFTER)
    assert found == capped.head_end


@pytest.mark.parametrize("cap_known", [True, False], ids=["its cap known", "its cap not known"])
def test_a_first_cut_that_falls_mid_line_is_told_and_the_log_goes_on_from_the_supervisors_line(tmp_path, capsys,
                                                                                                  cap_known):
    # Found by review: output without a line break within 64 KiB before the head's end is cut there, mid-line; its
    # line, not at a line's start, was taken for a routine's by both looks, and output that repeats exactly across
    # the cut was read on without the notice (and a notice went on from 4 KiB before the line, mid-output).
    import os

    from hrwsi.backends.local_supervisor import CappedLog
    cap = 1 << 18
    path = tmp_path / "job.log"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        capped = CappedLog(descriptor, cap)
        while not capped.dropped:
            capped.write(b"x" * 4096)
        while capped.size < cap * 3 // 4:  # (written on past what the follower read, no second cut)
            capped.write(b"x" * 4096)
    finally:
        os.close(descriptor)
    assert capped.head_end == cap // 4, "cut mid-line"
    read = cap * 3 // 4 - 8192  # (read before the cut: all x, as the bytes there are now)
    assert path.read_bytes()[read - logs.CHECKED_BYTES:read] == b"x" * logs.CHECKED_BYTES
    followed = logs._Followed(cap if cap_known else None)
    followed.offset, followed.last = read, b"x" * logs.CHECKED_BYTES
    logs._copy(path, followed, None)
    shown = capsys.readouterr()
    assert "the log reached its cap and was cut while followed" in shown.err
    assert shown.out.encode() == path.read_bytes()[cap // 4:], "from the supervisor's line on"
    assert followed.cap_line_at == cap // 4, "its line noted: the next cut is told by it"


def test_a_follower_takes_the_cap_its_supervisor_gave_the_log_not_its_own_setting(tmp_path, monkeypatch):
    # Found by review: the follower read the window of a first cut where this machine's HRWSI_JOB_LOG_MAX_BYTES put
    # it; a launcher with another cap cut elsewhere, told only by the periodic look, up to 5 s late.
    import subprocess

    from hrwsi.backends import local, local_supervisor
    monkeypatch.setenv("HRWSI_JOB_LOG_MAX_BYTES", str(1 << 20))
    attempt = tmp_path / "attempt-1"
    (attempt / "output").mkdir(parents=True)
    with (tmp_path / "job.log").open("ab") as log:
        subprocess.run([*local.SUPERVISOR_ARGV, "--attempt-dir", str(attempt), "--log-cap", str(3 << 20), "--", "true"],
                       stdout=log, stderr=subprocess.STDOUT, check=True, timeout=60)
    assert logs._log_cap(str(attempt / "output") + "/") == (3 << 20, 0)
    (attempt / local_supervisor.STARTED_FILE).write_text('{"supervisor_pid": 1, "started_at": "x", "protocol": 2}')
    assert logs._log_cap(str(attempt / "output")) is None, "a supervisor that does not say it: the periodic look"
    assert logs._log_cap(None) is None and logs._log_cap(str(tmp_path / "elsewhere" / "output")) is None
