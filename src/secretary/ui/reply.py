"""The reply engines: the transcript read back, or a chat model's reply.

Any OpenAI-compatible chat endpoint works (Ollama, vLLM, llama.cpp's server, OpenAI): the
request is the plain ``POST {base}/chat/completions`` that all of them accept, so no client
library is needed beyond httpx.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from secretary.config import UiSettings
from secretary.errors import redact_url, scrub
from secretary.ui.engine import Reply, ReplyEngine, Turn
from secretary.ui.upstream import UpstreamFailedError, http_failure, new_client


class EchoReply:
    """The first version's behaviour: say back what was heard."""

    def describe(self) -> dict[str, str | None]:
        return {"source": "echo", "model": None}

    async def reply(self, text: str, language: str | None, history: list[Turn]) -> Reply:
        return Reply(text=text, source="echo")


class ChatReply:
    def __init__(self, settings: UiSettings) -> None:
        assert settings.chat_url and settings.chat_model  # checked by UiSettings
        self.url = settings.chat_url.rstrip("/") + "/chat/completions"
        self.model = settings.chat_model
        self.system_prompt = settings.system_prompt
        self.timeout = httpx.Timeout(settings.chat_timeout, connect=5.0)
        key = settings.chat_api_key
        self.headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        # What must never reach the page or the log, whatever the chat server echoes.
        parts = urlsplit(self.url)
        self.secrets = tuple(s for s in (key.get_secret_value() if key else None,
                                         parts.password, parts.username) if s)

    def describe(self) -> dict[str, str | None]:
        return {"source": "chat", "model": self.model}

    def messages(self, text: str, language: str | None, history: list[Turn]) -> list[dict]:
        system = self.system_prompt
        if language:
            system += f"\nThe user is speaking the language with ISO code {language!r}."
        return [
            {"role": "system", "content": system},
            *({"role": t.role, "content": t.content} for t in history),
            {"role": "user", "content": text},
        ]

    async def reply(self, text: str, language: str | None, history: list[Turn]) -> Reply:
        payload = {
            "model": self.model,
            "messages": self.messages(text, language, history),
            "stream": False,
        }
        where = f"the chat model at {redact_url(self.url)}"
        try:
            async with new_client(self.timeout) as client:
                answer = await client.post(self.url, json=payload, headers=self.headers)
        except httpx.HTTPError as exc:
            failure = http_failure(where, exc, remedy="start it or unset SECRETARY_UI_CHAT_URL",
                                   param="chat")
            failure.message = scrub(failure.message, self.secrets)
            raise failure from None
        content = _content(answer)
        if answer.status_code != 200 or content is None:
            raise UpstreamFailedError(
                f"{where} answered HTTP {answer.status_code}: "
                f"{scrub(_error_text(answer), self.secrets)}",
                param="chat",
            )
        return Reply(text=content.strip(), source="chat", model=self.model)


def _content(answer: httpx.Response) -> str | None:
    try:
        return answer.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _error_text(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return answer.text[:200] or "no body"


def reply_engine(settings: UiSettings) -> ReplyEngine:
    return ChatReply(settings) if settings.chat_url else EchoReply()
