"""Session files: append-only, locked, torn tails tolerated, corruption reported by line."""

import stat

import pytest

from rlm_tui.errors import SessionError
from rlm_tui.events import Notice, RunStarted, dump_event
from rlm_tui.session.store import TORN_NOTICE, SessionWriter, find_session, read_session


def _start(writer: SessionWriter) -> None:
    writer.append(
        RunStarted(run_id=writer.directory.name, query="q", model="demo", sub_model="demo")
    )


def test_round_trip(tmp_path):
    writer = SessionWriter.create(tmp_path, "s1")
    _start(writer)
    writer.append(Notice(message="hello"))
    writer.close()
    log = read_session(tmp_path / "s1")
    assert [e.type for e in log.events] == ["run_started", "notice"]
    assert find_session("s1", tmp_path) == tmp_path / "s1"


def test_second_writer_is_refused(tmp_path):
    writer = SessionWriter.create(tmp_path, "s1")
    with pytest.raises(SessionError, match="being written by pid"):
        SessionWriter(tmp_path / "s1").open()
    writer.close()
    SessionWriter(tmp_path / "s1").open()


def test_torn_last_line_is_reported_and_ignored_and_appending_goes_on(tmp_path):
    writer = SessionWriter.create(tmp_path, "s1")
    _start(writer)
    writer.close()
    path = tmp_path / "s1" / "events.jsonl"
    with open(path, "a") as f:
        f.write('{"type": "notice", "mess')
    log = read_session(tmp_path / "s1")
    assert len(log.events) == 1 and "torn line" in log.problems[0]
    again = SessionWriter(tmp_path / "s1")
    again.open()
    again.append(Notice(message="after the crash"))
    again.close()
    log = read_session(tmp_path / "s1")
    assert [e.message for e in log.events[1:]] == [TORN_NOTICE, "after the crash"]
    assert log.events[1].seq == log.events[0].seq + 1  # the repair notice has a real seq
    assert log.problems == [f"{path}:2: torn line ignored"]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    writer = SessionWriter.create(tmp_path, "s1")
    _start(writer)
    writer.close()
    path = tmp_path / "s1" / "events.jsonl"
    with open(path, "a") as f:
        f.write("not json\n")
        f.write('{"type": "notice", "message": "x"}\n')
    with pytest.raises(SessionError, match=r"events.jsonl:2: corrupt"):
        read_session(tmp_path / "s1")


def test_unknown_session(tmp_path):
    with pytest.raises(SessionError, match="no session 'nope'"):
        find_session("nope", tmp_path)


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("{tmp}", "not a session directory"),  # absolute: pathlib cannot glob it
        ("{tmp}/missing", "no such directory"),
        ("{tmp}/a-file", "not a session$"),
        ("plain", "not a session directory"),  # a directory of the cwd, not an id
    ],
)
def test_a_path_that_is_no_session(tmp_path, monkeypatch, ref, why):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "plain").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SessionError, match=why):
        find_session(ref.format(tmp=tmp_path), tmp_path / "sessions")


def test_the_repair_notice_comes_after_the_torn_lines_number(tmp_path):
    writer = SessionWriter.create(tmp_path, "s1")
    _start(writer)
    writer.close()
    line = dump_event(Notice(seq=40, message="cut short by the crash"))
    with open(tmp_path / "s1" / "events.jsonl", "a") as f:
        f.write(line[: line.index("cut")])
    again = SessionWriter(tmp_path / "s1")
    again.open()
    again.close()
    assert read_session(tmp_path / "s1").events[-1].seq == 41


def test_sessions_dir_and_the_parents_it_makes_are_private(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    SessionWriter.create(mine / "a" / "b", "s1").close()
    made = [mine / "a", mine / "a" / "b", mine / "a" / "b" / "s1"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in made] == [0o700] * 3
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755  # not rlm-tui's to change


def test_sessions_dir_that_is_a_file(tmp_path):
    (tmp_path / "a-file").write_text("kept")
    with pytest.raises(SessionError, match="a-file: not a directory"):
        SessionWriter.create(tmp_path / "a-file", "s1")
    assert (tmp_path / "a-file").read_text() == "kept"
