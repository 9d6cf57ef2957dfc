"""A call's summary by the chat model (a real one: llama.cpp's server with SmolLM2-135M,
as the other chat tests use), and the caller's first sentences where the model is not
configured, refuses, fails or is too slow; the call's record is kept in every case."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from secretary.phone.calls import CallLog, CallRecord, first_sentences
from secretary.phone.summary import CallSummarizer
from tests.conftest import make_settings
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.phone.conftest import Phone, clip, needs_pjsua2
from tests.phone.test_call import CLIP, calls, wait_for_record

SAID = ("Hello, this is Bob Miller from the garage. Your car is ready, you can pick it up "
        "tomorrow after nine. Call me back on five five five, one two three four.")


@pytest.fixture(scope="module")
def chat() -> Iterator[str]:
    with llama_server() as url:
        yield url


def a_call() -> CallRecord:
    record = CallRecord.of('"Bob" <sip:5551234@pbx.example>')
    record.add("secretary", "Hello, this is the secretary. How can I help you?")
    record.add("caller", SAID)
    record.add("secretary", "I will pass that on. Goodbye.")
    record.finish("the caller said goodbye")
    return record


def test_without_a_chat_model_there_is_no_summarizer(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    assert CallSummarizer.from_settings(settings) is None
    settings.ui = settings.ui.model_copy(update={"chat_url": "http://127.0.0.1:9/v1",
                                                 "chat_model": "m"})
    summarizer = CallSummarizer.from_settings(settings)
    assert summarizer is not None and summarizer.timeout == 20.0
    settings.ui = settings.ui.model_copy(update={"chat_timeout": 5.0})
    summarizer = CallSummarizer.from_settings(settings)
    assert summarizer is not None and summarizer.timeout == 5.0
    record = a_call()
    assert record.summary == first_sentences(SAID) and record.summary_source == "transcript"


@needs_llama
async def test_the_chat_model_summarizes_a_call(chat: str) -> None:
    summarizer = CallSummarizer(chat, MODEL_NAME, timeout=60)
    record = a_call()
    try:
        await summarizer.summarize(record)
    finally:
        await summarizer.aclose()
    assert record.summary_source == "chat", record
    assert record.summary and record.summary != first_sentences(SAID)
    assert len(record.summary) <= 300
    assert "\n" not in record.summary
    # The note is the model's summary, then the whole transcript.
    assert f"Message: {record.summary}" in record.note()
    assert SAID in record.note()


async def test_nothing_to_summarize_asks_no_model() -> None:
    record = CallRecord.of("sip:200@pbx.example")
    record.add("secretary", "Hello, this is the secretary. How can I help you?")
    record.finish("no sound for 30 s")
    summarizer = CallSummarizer("http://127.0.0.1:9/v1", "m", timeout=5)
    began = time.monotonic()
    await summarizer.summarize(record)
    await summarizer.aclose()
    assert time.monotonic() - began < 0.5
    assert record.summary == "" and record.summary_source == ""
    assert "No message was left." in record.note()


class Broken(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "out of memory"}}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_chat() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()


@pytest.fixture
def silent_chat() -> Iterator[str]:
    """A chat server that takes the connection and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


@pytest.mark.parametrize("which", ["refused", "broken", "silent"])
async def test_a_failing_chat_model_leaves_the_first_sentences(
        which: str, broken_chat: str, silent_chat: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    url = {"refused": "http://127.0.0.1:9/v1", "broken": broken_chat,
           "silent": silent_chat}[which]
    summarizer = CallSummarizer(url, "m", timeout=1.0)
    record = a_call()
    began = time.monotonic()
    await summarizer.summarize(record)
    await summarizer.aclose()
    assert time.monotonic() - began < 3.0
    assert record.summary == first_sentences(SAID)
    assert record.summary_source == "transcript"
    assert any("first sentences stand" in r.getMessage() for r in caplog.records)
    log = CallLog(tmp_path / "calls")
    log.save(record)
    assert [c["summary"] for c in log.list()] == [first_sentences(SAID)]


# ------------------------------------------------------------------ over a real call

def call_and_record(phone: Phone, tmp_path: Path) -> dict:
    before = len(calls(phone))
    speech = clip(tmp_path, CLIP, 8000)
    phone.call("--codec", "PCMU", "--play", str(speech), "--play-after", "4.5",
               "--hangup-after", "12", "--from-uri", "sip:5550000@127.0.0.1",
               "--name", "Carol")
    return wait_for_record(phone, before, timeout=90)


@needs_pjsua2
def summarized_call(phone: Phone, summarizer: CallSummarizer,
                    tmp_path: Path) -> tuple[dict, str]:
    """A real call with ``summarizer`` on the service: its record, and what the caller
    said in it."""
    service = phone.service
    service.summarizer = summarizer
    try:
        record = call_and_record(phone, tmp_path)
    finally:
        service.summarizer = None
        # Closed on the service's own loop, where its client was used.
        assert service.loop is not None
        asyncio.run_coroutine_threadsafe(summarizer.aclose(), service.loop).result(10)
    said = " ".join(line["text"] for line in record["lines"] if line["who"] == "caller")
    return record, said


@needs_llama
def test_a_real_call_is_summarized_by_the_chat_model(phone: Phone, chat: str,
                                                     tmp_path: Path) -> None:
    service = phone.service
    assert service.summarizer is None  # the fixture's settings name no chat model
    record, said = summarized_call(phone, CallSummarizer(chat, MODEL_NAME, timeout=60),
                                   tmp_path)
    assert said, record
    assert record["summary_source"] == "chat", record
    assert record["summary"] and record["summary"] != first_sentences(said)
    assert record["caller_name"] == "Carol"
    note = service.log.notes.search("Carol")
    assert note and f"Message: {record['summary']}" in note[0].text


@needs_pjsua2
def test_a_real_call_is_kept_when_the_chat_model_hangs(phone: Phone, silent_chat: str,
                                                       tmp_path: Path) -> None:
    record, said = summarized_call(phone, CallSummarizer(silent_chat, "m", timeout=2.0),
                                   tmp_path)
    assert record["summary_source"] == "transcript", record
    assert record["summary"] == first_sentences(said)
