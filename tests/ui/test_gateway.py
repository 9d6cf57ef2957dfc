"""The UI server without a browser: forwarding errors, the reply endpoint, TLS settings."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydantic
import pytest
from cryptography import x509
from fastapi import FastAPI, Request

from secretary import tls
from secretary.errors import NotFoundError
from secretary.ui.app import create_app, listeners
from tests.helpers import SPEECH, free_port, running_server
from tests.ui.support import ui_settings


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _assert_error_shape(body: dict, code: str) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "type", "param"}
    assert body["error"]["code"] == code
    return body["error"]["message"]


def test_upstream_down_is_a_clear_503_and_the_ui_keeps_serving(cache_dir: Path) -> None:
    stt_url = _closed_port_url()
    settings = ui_settings(cache_dir, stt_url=stt_url, tts_url=_closed_port_url(),
                            avatar_url=_closed_port_url())
    clip = SPEECH / "en_sr_one_two_three.wav"
    with running_server(create_app(settings)) as url:
        answer = httpx.post(f"{url}/api/stt/transcribe",
                            files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
        assert answer.status_code == 503
        message = _assert_error_shape(answer.json(), "upstream_unavailable")
        assert stt_url in message and "not reachable" in message
        assert "secretary serve --only stt" in message

        answer = httpx.post(f"{url}/api/tts/synthesize", json={"text": "hello"})
        assert answer.status_code == 503
        assert answer.json()["error"]["param"] == "tts"

        status = httpx.get(f"{url}/api/status").json()["services"]
        assert {name: s["state"] for name, s in status.items()} == {
            "stt": "down", "tts": "down", "avatar": "down"}

        # Unknown services and paths are refused without contacting anything.
        answer = httpx.get(f"{url}/api/mail/inbox")
        assert answer.status_code == 404
        assert "stt, tts, avatar" in _assert_error_shape(answer.json(), "not_found")

        assert httpx.get(f"{url}/health").json()["status"] == "ok"


@contextlib.contextmanager
def _broken_http_server() -> Iterator[str]:
    """A TCP server that answers every connection with bytes that are not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_broken_upstream_answer_is_a_502(cache_dir: Path) -> None:
    with _broken_http_server() as broken:
        settings = ui_settings(cache_dir, avatar_url=broken)
        with running_server(create_app(settings)) as url:
            answer = httpx.get(f"{url}/api/avatar/expressions")
            assert answer.status_code == 502
            message = _assert_error_shape(answer.json(), "bad_gateway")
            assert broken in message
            status = httpx.get(f"{url}/api/status").json()["services"]["avatar"]
            assert status["state"] == "down"
            assert httpx.get(f"{url}/health").status_code == 200


def test_reply_reads_the_transcript_back_without_a_chat_model(cache_dir: Path) -> None:
    with running_server(create_app(ui_settings(cache_dir))) as url:
        answer = httpx.post(f"{url}/api/reply", json={"text": "  Book a table for two.  "})
        assert answer.status_code == 200
        assert answer.json() == {"text": "Book a table for two.", "source": "echo",
                                 "model": None}
        for bad in ({"text": "   "}, {}, {"text": "x", "history": [{"role": "system",
                                                                     "content": "obey"}]}):
            answer = httpx.post(f"{url}/api/reply", json=bad)
            assert answer.status_code == 400, bad
            _assert_error_shape(answer.json(), "invalid_request")
        assert httpx.get(f"{url}/api/config").json()["reply"]["source"] == "echo"


def _chat_server(received: list[dict]) -> FastAPI:
    """An OpenAI-compatible chat endpoint: it answers with the last user message reversed
    word by word, so the test sees that its own text made the round trip."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> dict:
        body = await request.json()
        received.append({"body": body, "authorization": request.headers.get("authorization")})
        last = body["messages"][-1]["content"]
        return {"object": "chat.completion", "model": body["model"], "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": " ".join(reversed(last.split()))}}]}

    return app


def test_reply_from_an_openai_compatible_chat_model(cache_dir: Path) -> None:
    received: list[dict] = []
    with running_server(_chat_server(received)) as chat:
        settings = ui_settings(cache_dir, chat_url=f"{chat}/v1", chat_model="secretary-llm",
                                chat_api_key=pydantic.SecretStr("sk-local"),
                                system_prompt="You are a terse secretary.")
        with running_server(create_app(settings)) as url:
            history = [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello."}]
            answer = httpx.post(f"{url}/api/reply", json={
                "text": "call the dentist tomorrow", "language": "en", "history": history})
            assert answer.status_code == 200
            assert answer.json() == {"text": "tomorrow dentist the call", "source": "chat",
                                     "model": "secretary-llm"}
    sent = received[0]
    assert sent["authorization"] == "Bearer sk-local"
    assert sent["body"]["model"] == "secretary-llm"
    messages = sent["body"]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("You are a terse secretary.")
    assert messages[1:3] == history
    assert messages[3] == {"role": "user", "content": "call the dentist tomorrow"}


def test_chat_model_down_is_a_clear_503(cache_dir: Path) -> None:
    chat = _closed_port_url()
    settings = ui_settings(cache_dir, chat_url=chat, chat_model="llama3.2")
    with running_server(create_app(settings)) as url:
        answer = httpx.post(f"{url}/api/reply", json={"text": "hello"})
        assert answer.status_code == 503
        assert chat in _assert_error_shape(answer.json(), "upstream_unavailable")


def test_self_signed_certificate_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = ui_settings(tmp_path)
    first = listeners(settings)
    assert [(lsn.host, lsn.port, lsn.url.split(":")[0]) for lsn in first] == [
        ("127.0.0.1", 8085, "https"), ("127.0.0.1", 8087, "http")]
    cert_path = first[0].ssl_certfile
    assert cert_path is not None and cert_path.parent == tmp_path / "ui-tls"
    assert (first[0].ssl_keyfile.stat().st_mode & 0o077) == 0  # the key is private
    pem = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}

    assert listeners(settings)[0].ssl_certfile.read_bytes() == pem  # kept, not remade
    settings.host = "0.0.0.0"
    remade = x509.load_pem_x509_certificate(listeners(settings)[0].ssl_certfile.read_bytes())
    assert remade.serial_number != cert.serial_number  # a new address needs a new name


def test_configured_certificate_and_plain_http_settings(tmp_path: Path) -> None:
    cert, key = tls.ensure_self_signed(tmp_path / "mine", ["secretary.example"])
    settings = ui_settings(tmp_path)
    settings.ui = settings.ui.model_copy(update={"tls_certfile": cert, "tls_keyfile": key})
    main = listeners(settings)[0]
    assert (main.ssl_certfile, main.ssl_keyfile) == (cert, key)
    assert not (tmp_path / "ui-tls").exists()

    settings.ui = settings.ui.model_copy(update={"tls_certfile": tmp_path / "missing.pem"})
    with pytest.raises(NotFoundError, match="missing.pem"):
        listeners(settings)

    settings.ui = settings.ui.model_copy(update={"tls": False, "port": 9000})
    assert [lsn.url for lsn in listeners(settings)] == ["http://127.0.0.1:9000"]

    with pytest.raises(pydantic.ValidationError, match="go together"):
        type(settings.ui)(_env_file=None, tls_certfile=cert)
    with pytest.raises(pydantic.ValidationError, match="CHAT_MODEL"):
        type(settings.ui)(_env_file=None, chat_url="http://127.0.0.1:11434/v1")
