"""Call control over real calls: DTMF, goodbye, transfer, the call limit, silence."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.phone.conftest import Phone, needs_pjsua2, silence, spoken
from tests.phone.test_call import calls, wait_for_record

pytestmark = needs_pjsua2


def test_dtmf_reaches_the_brain(phone: Phone, tmp_path: Path) -> None:
    before = len(calls(phone))
    # the caller's stream sends RFC 4733 events while it sends audio (a phone always does)
    quiet = silence(tmp_path, 8)
    events = phone.call("--play", str(quiet), "--play-after", "0.5", "--dtmf", "1",
                        "--dtmf-after", "2", "--hangup-after", "11")
    assert {"event": "dtmf", "digits": "1"} in events
    record = wait_for_record(phone, before)
    assert {"who": "event", "text": "pressed 1"} in [
        {k: line[k] for k in ("who", "text")} for line in record["lines"]]
    # the echo brain reads back what it was given: the digit as text
    assert any("pressed 1" in line["text"] for line in record["lines"]
               if line["who"] == "secretary"), record["lines"]


def test_goodbye_ends_the_call(phone: Phone, tmp_path: Path) -> None:
    before = len(calls(phone))
    goodbye = spoken(phone, "Thank you, that is all. Goodbye!", tmp_path)
    events = phone.call("--play", str(goodbye), "--play-after", "4", "--hangup-after", "40")
    assert events[-1]["by"] == "them", events
    record = wait_for_record(phone, before)
    assert record["end_reason"] == "the caller said goodbye", record
    assert record["duration_s"] < 30


def test_asking_for_a_person_sends_refer(phone: Phone, tmp_path: Path) -> None:
    before = len(calls(phone))
    ask = spoken(phone, "Can I speak to a real person, please?", tmp_path)
    events = phone.call("--play", str(ask), "--play-after", "4", "--hangup-after", "40")
    assert {"event": "transfer", "to": phone.service.options.transfer_to} in events, events
    record = wait_for_record(phone, before)
    assert record["transferred_to"] == phone.service.options.transfer_to


def test_busy_beyond_max_calls(phone: Phone) -> None:
    first = phone.start_call("--hangup-after", "5")
    try:
        deadline = time.monotonic() + 20
        while not phone.service.calls and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        events = phone.call("--hangup-after", "3")
        assert events[-1]["code"] == 486, events
    finally:
        out, _ = first.communicate(timeout=60)
    ends = [json.loads(line) for line in out.splitlines() if '"end"' in line]
    assert ends and ends[-1]["by"] == "us"  # the first call went on


def test_silence_is_hung_up(phone: Phone) -> None:
    before = len(calls(phone))
    began = time.monotonic()
    events = phone.call("--hangup-after", "40")
    assert events[-1]["by"] == "them", events
    assert time.monotonic() - began < 25
    record = wait_for_record(phone, before)
    assert record["end_reason"] == "no sound for 6 s"


def test_longest_call_is_hung_up(phone: Phone, tmp_path: Path) -> None:
    options = phone.service.options
    saved = options.max_call_s
    options.max_call_s = 3.0
    try:
        before = len(calls(phone))
        quiet = silence(tmp_path, 20)  # RTP all along; its silence would end it at 6 s
        began = time.monotonic()
        events = phone.call("--play", str(quiet), "--play-after", "0.2", "--hangup-after", "30")
        assert events[-1]["by"] == "them", events
        assert time.monotonic() - began < 12
    finally:
        options.max_call_s = saved
    record = wait_for_record(phone, before)
    assert record["end_reason"] == "the call reached its maximum length of 3 s"
