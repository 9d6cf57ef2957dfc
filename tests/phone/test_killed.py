"""A telephone killed mid-call loses nothing that was said: the call so far is kept as it
goes, and the next start finishes and saves it (the file, the note), once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from secretary.phone.calls import CallLog, CallRecord
from secretary.skills.notes import NotesStore
from tests.helpers import stop_process, wer
from tests.phone.conftest import CALLER, clip, free_tcp_port, free_udp_port, needs_pjsua2
from tests.phone.process import PhoneProcess, read_back_settings
from tests.phone.test_call import CLIP, HEARD_CEILING, SAID


def _phone(cache_dir: Path, data_dir: Path, folder: Path) -> tuple[PhoneProcess, int]:
    port = free_udp_port()
    return PhoneProcess(read_back_settings(port, {
        "cache_dir": str(cache_dir), "data_dir": str(data_dir)}), folder,
        free_tcp_port()), port


@needs_pjsua2
def test_a_call_in_progress_survives_the_telephone_being_killed(
        cache_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal = data / "calls" / "in-progress"
    phone, port = _phone(cache_dir, data, tmp_path)
    caller = None
    try:
        phone.wait_ready()
        caller = subprocess.Popen(
            [sys.executable, str(CALLER), "--to", f"sip:secretary@127.0.0.1:{port}",
             "--codec", "PCMU", "--play", str(clip(tmp_path, CLIP, 8000)),
             "--play-after", "4.5", "--hangup-after", "60", "--from-uri",
             "sip:5550100@127.0.0.1", "--name", "Carol"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Until the caller's words are in what is kept of the call, then kill -9 mid-call.
        deadline = time.monotonic() + 60
        kept: dict = {}
        while not any(line["who"] == "caller" for line in kept.get("lines", [])):
            assert time.monotonic() < deadline, f"nothing kept: {phone.log()[-3000:]}"
            time.sleep(0.2)
            for path in journal.glob("call_*.json"):
                kept = json.loads(path.read_text())
        phone.process.send_signal(signal.SIGKILL)
        phone.process.wait(10)
    finally:
        phone.stop()
        if caller is not None:
            stop_process(caller)
    assert not list((data / "calls").glob("call_*.json"))  # not saved before the kill

    again, _ = _phone(cache_dir, data, tmp_path)
    try:
        again.wait_ready()
        calls = httpx.get(f"{again.url}/api/calls").json()["data"]
    finally:
        again.stop()
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["id"] == kept["id"] and call["caller_name"] == "Carol"
    assert call["caller_number"] == "5550100" and call["codec"] == "PCMU"
    assert call["end_reason"] == CallLog.RECOVERED and call["ended"]
    said = " ".join(line["text"] for line in call["lines"] if line["who"] == "caller")
    assert wer(SAID, said, "en") <= HEARD_CEILING, said
    assert call["summary"] and call["summary_source"] == "transcript"
    assert not list(journal.glob("*.json"))
    notes = NotesStore(data / "notes.sqlite3").search("shook hands")
    assert len(notes) == 1 and "Carol (5550100)" in notes[0].text, notes


def test_a_call_saved_just_before_the_kill_is_not_saved_twice(tmp_path: Path) -> None:
    notes = NotesStore(tmp_path / "notes.sqlite3")
    log = CallLog(tmp_path / "calls", notes)
    record = CallRecord.of('"Dave" <sip:5550199@pbx>')
    record._journal = log.keep
    log.keep(record)
    record.add("caller", "Please call me back about the invoice.")
    kept = log.in_progress / f"{record.id}.json"
    assert json.loads(kept.read_text())["lines"][0]["text"].startswith("Please call")
    record.finish("the caller hung up")
    record.add("secretary", "Goodbye.")  # after the end: the finished record is saved whole
    log.save(record)
    assert not kept.exists()
    # Killed after the file was written and before the copy in progress went:
    kept.write_text(json.dumps(record.as_json()))
    assert log.recover() == []
    assert not kept.exists()
    assert len(notes.search("invoice")) == 1
    assert len(log.list()) == 1


def test_what_cannot_be_read_back_is_left_where_it_is(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls")
    log.in_progress.mkdir(parents=True)
    broken = log.in_progress / "call_0123456789abcdef.json"
    broken.write_text('{"caller_uri": "sip:1@x", "lines": [')  # cut mid-write elsewhere
    assert log.recover() == []
    assert broken.exists() and log.list() == []
