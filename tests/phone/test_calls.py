"""Call records: the caller parsed, the transcript, the note, the file and the webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from secretary.phone.calls import CallLog, CallRecord, first_sentences, parse_caller
from secretary.skills.notes import NotesStore


def test_parse_caller() -> None:
    assert parse_caller('"Alice Smith" <sip:+49301234@pbx.example>;tag=1') == (
        "Alice Smith", "+49301234")
    assert parse_caller("<sip:200@10.0.0.1:5060>") == ("", "200")
    assert parse_caller("sip:bob@example.org") == ("", "bob")


def test_summary_is_the_callers_first_sentences() -> None:
    assert first_sentences("Hi. This is Bob. Call me back. Thanks.") == "Hi. This is Bob."
    assert len(first_sentences("word " * 200)) <= 300


def test_record_saved_as_note_file_and_webhook(tmp_path: Path) -> None:
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notes = NotesStore(tmp_path / "notes.sqlite3")
    log = CallLog(tmp_path / "calls", notes, f"http://127.0.0.1:{server.server_port}/hook")
    record = CallRecord.of('"Bob" <sip:555@example>')
    record.add("secretary", "Hello, this is the secretary.")
    record.add("caller", "This is Bob. Please call me back about the invoice. Thanks.")
    record.finish("the caller hung up")
    log.save(record)
    server.shutdown()

    saved = log.list()
    assert [c["id"] for c in saved] == [record.id]
    assert saved[0]["summary"] == "This is Bob. Please call me back about the invoice."
    assert [line["who"] for line in saved[0]["lines"]] == ["secretary", "caller"]
    assert got == saved
    (note,) = notes.search("invoice")
    assert "Bob (555)" in note.text and "caller: This is Bob." in note.text
