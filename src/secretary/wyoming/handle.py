"""The secretary as a Wyoming conversation agent (a ``handle`` program): Home Assistant sends
``transcript`` (text, language, a context with its ``conversation_id``) and reads back
``handled`` with the answer, or ``not-handled``.

The answer is the conversation brain's (``conversation.build.build_brain``), built once per
service: the skills first, then the chat model where one is configured, else a short "what I
can do", as in the browser. Each conversation is a brain session of its own
("wyoming:<conversation_id>"; without a context, one per connection), so a question the
secretary asks back ("Which lunch: Friday's or Monday's?") is answered by the next transcript
of the same conversation, and the chat model sees that conversation's earlier turns.

What is sent back:
- ``handled`` with the answer, whenever the brain answered. That includes the skills saying
  that the calendar could not be reached (it is the secretary's answer, said in the user's
  language) and the "what I can do" for a sentence nothing understood: Home Assistant's
  Wyoming agent turns ``not-handled`` into an error response (FAILED_TO_HANDLE), which its
  pipeline reports as a failed run, and it does not pass the sentence to another agent
  either, so ``not-handled`` would only mark a useful answer as a failure.
- ``not-handled`` with the error's message when the brain failed (the chat model down or
  refusing): nothing was answered, and Home Assistant still speaks the message.
- ``error`` for a transcript that cannot be used (no text, empty, too long, a control
  character, a context that is not an object), by the rules in ``handlers``: the connection
  stays open for the next event.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from wyoming.asr import Transcript
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import HandleModel, HandleProgram, Info

from secretary import __version__
from secretary.conversation.stages import Brain, Cancel, Heard, StageError
from secretary.errors import InvalidRequestError, SecretaryError
from secretary.validation import check_text, has_speech
from secretary.wyoming.handlers import _Connection
from secretary.wyoming.service import _SECRETARY, PROGRAM, WyomingService, text_field

# As the UI's typed box (/api/reply) allows: longer is not a spoken request.
MAX_TRANSCRIPT_CHARS = 4000
MAX_CONVERSATION_ID_CHARS = 200
# What the skills understand without a chat model (their sentence templates).
SKILL_LANGUAGES = ("de", "en")
SESSION_PREFIX = "wyoming:"


@dataclass(frozen=True)
class Said:
    """A usable ``transcript``: its text (stripped), language (primary subtag) and the
    conversation it belongs to (None: not given)."""

    text: str
    language: str | None
    conversation_id: str | None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Said:
        text = check_text(text_field(data, "text", "transcript", required=True) or "", "text")
        text = text.strip()
        if not has_speech(text):
            raise InvalidRequestError("transcript: the text is empty; there is nothing to "
                                      "answer", param="text")
        if len(text) > MAX_TRANSCRIPT_CHARS:
            raise InvalidRequestError(
                f"transcript: the text has {len(text)} characters, over the limit of "
                f"{MAX_TRANSCRIPT_CHARS}", param="text")
        language = text_field(data, "language", "transcript")
        if language is not None:
            check_text(language, "language")
            # Home Assistant sends its pipeline's language: "de", or "de-DE".
            language = language.strip().replace("_", "-").split("-")[0].lower() or None
        return cls(text, language, _conversation_id(data.get("context")))


def _conversation_id(context: Any) -> str | None:
    if context is None:
        return None
    if not isinstance(context, dict):
        raise InvalidRequestError("transcript: context must be an object, not "
                                  f"{type(context).__name__}", param="context")
    value = context.get("conversation_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CONVERSATION_ID_CHARS:
        raise InvalidRequestError(
            "transcript: context.conversation_id must be a string of 1 to "
            f"{MAX_CONVERSATION_ID_CHARS} characters", param="context.conversation_id")
    return check_text(value, "context.conversation_id")


def handle_info(service: WyomingService) -> Info:
    """One ``handle`` program: the secretary, in the languages its skills understand."""
    brain = _brain(service)
    described = brain.describe()
    secretary = getattr(brain, "secretary", None)
    matcher = getattr(secretary, "matcher", None)
    languages = sorted(getattr(matcher, "languages", None) or SKILL_LANGUAGES)
    chat = described.get("model")
    source = described.get("source")
    if source == "skills":
        description = ("Calendar, to-dos, reminders, notes and memory"
                       + (f"; other requests go to the chat model {chat}" if chat else ""))
    elif source == "chat":
        description = f"The chat model {chat}"
    else:
        description = "Reads the transcript back (SECRETARY_CONVERSATION_BRAIN=echo)"
    model = HandleModel(
        name=str(source or "secretary"), description=description, attribution=_SECRETARY,
        installed=True, version=__version__, languages=languages)
    return Info(handle=[HandleProgram(
        name=PROGRAM, description="Secretary conversation agent", attribution=_SECRETARY,
        installed=True, version=__version__, models=[model],
        supports_handled_streaming=False,
        # It keeps the user's calendar and notes; it does not switch the home's devices.
        supports_home_control=False,
    )])


async def converse(brain: Brain, session: str, said: Said) -> str:
    """The brain's whole answer in ``session``, kept in that session's history as a voice
    turn is (the chat model sees the conversation's earlier turns)."""
    heard = Heard(text=said.text, language=said.language or "", language_probability=1.0,
                  duration=0.0)
    deltas = [delta async for delta in brain.reply(session, heard, Cancel())]
    answer = "".join(deltas).strip()
    if answer:
        brain.remember(session, said.text, answer)
    return answer


def _brain(service: WyomingService) -> Brain:
    if service.brain is None:
        raise InvalidRequestError("the conversation agent is turned off here")
    return service.brain


class HandleConnection(_Connection):
    """``transcript`` -> ``handled`` / ``not-handled``; ``describe`` -> the program."""

    kind = "handle"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The conversation of a client that sends no context: this connection's own.
        self.conversation_id = uuid.uuid4().hex

    async def info(self) -> Any:
        return handle_info(self.service)

    async def handle(self, event: Event) -> bool:
        if not Transcript.is_type(event.type):
            return True  # the protocol's other events are not for this server
        said = Said.parse(event.data)
        brain = _brain(self.service)
        started = time.perf_counter()
        conversation = said.conversation_id or self.conversation_id
        context = {"conversation_id": conversation}
        self.busy = True
        try:
            answer = await converse(brain, SESSION_PREFIX + conversation, said)
        except (SecretaryError, StageError) as exc:
            self.reset()
            await self.write_event(NotHandled(text=exc.message, context=context).event())
            self.observer.request("handle", time.perf_counter() - started, "not_handled")
            return True
        self.reset()
        if not answer:  # a chat model that said nothing: no answer to speak
            await self.write_event(NotHandled(text="The secretary has no answer to that.",
                                              context=context).event())
            self.observer.request("handle", time.perf_counter() - started, "not_handled")
            return True
        await self.write_event(Handled(text=answer, context=context).event())
        self.observer.request("handle", time.perf_counter() - started, "ok")
        return True
