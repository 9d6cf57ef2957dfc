"""Wiring a pipeline from the settings: each stage in-process or over HTTP."""

from __future__ import annotations

from typing import Any

from secretary.config import Settings
from secretary.conversation.brain import ChatBrain, EchoBrain, History
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.runner import Pipeline, PipelineOptions
from secretary.conversation.stages import Animator, Brain, Speaker, Transcriber
from secretary.stt.fastfinal import FastFinalPolicy


def build_brain(settings: Settings) -> Brain:
    """The skills first, then the chat model (or a short 'what I can do'), with the skills
    and the MCP servers (``SECRETARY_MCP_SERVERS``) as its tools; or, as an explicit setting
    for tests, the transcript read back."""
    ui, conversation = settings.ui, settings.conversation
    history = History(conversation.history_turns, conversation.max_sessions)
    chat: ChatBrain | None = None
    if ui.chat_url:
        assert ui.chat_model  # checked by UiSettings
        key = ui.chat_api_key.get_secret_value() if ui.chat_api_key else None
        chat = ChatBrain(ui.chat_url, ui.chat_model, ui.system_prompt, history, api_key=key,
                         timeout=ui.chat_timeout, max_tokens=conversation.chat_max_tokens,
                         temperature=conversation.chat_temperature)
    if conversation.brain == "echo":
        return chat or EchoBrain(history)
    from secretary.skills.brain import SkillBrain
    from secretary.skills.build import build_secretary
    from secretary.skills.tools import SkillTools

    secretary = build_secretary(settings)
    choice = conversation.chat_tool_choice
    mcp = None
    if chat is not None and choice != "none":
        chat.tools = SkillTools(secretary)
        if settings.mcp.servers.strip():
            # The MCP servers' tools beside the skills'; they connect from now on, in this
            # process (the one that serves the turns).
            from secretary.mcp.tools import McpToolbox

            mcp = McpToolbox.from_settings(settings.mcp, chat.tools)
            mcp.start()
            chat.tools = mcp
        chat.tool_choice = choice if choice in ("auto", "required") else {
            "type": "function", "function": {"name": choice}}
    return SkillBrain(secretary, chat, history, mcp)


def build_pipeline(settings: Settings, metrics: TurnMetrics) -> Pipeline:
    """Engines are imported only for the stages that run here; a remote stage whose address
    is not set is this machine's service on its port."""
    conversation, ui = settings.conversation, settings.ui_upstreams()
    timeout = ui.upstream_timeout
    key = settings.api_keys[0] if settings.api_keys else None  # for the remote stages

    transcriber: Transcriber
    if conversation.stage("stt") == "local":
        from secretary.conversation.local import LocalTranscriber
        from secretary.stt.models import WhisperModels
        from secretary.stt.whisper import WhisperEngine

        policy = FastFinalPolicy(enabled=conversation.fast_final,
                                 min_window=conversation.fast_final_min_window)
        stt = settings.stt
        if conversation.stt_threads:
            stt = stt.model_copy(update={"cpu_threads": conversation.stt_threads})
        whisper = WhisperEngine(stt, WhisperModels(settings.models_dir))
        transcriber = LocalTranscriber(whisper, policy, conversation.beam_size)
    else:
        from secretary.conversation.remote import RemoteTranscriber

        transcriber = RemoteTranscriber(ui.stt_url, timeout, key)

    speaker: Speaker
    if conversation.stage("tts") == "local":
        from secretary.conversation.local import LocalSpeaker
        from secretary.tts.service import TtsService

        speaker = LocalSpeaker(TtsService(settings), conversation.speech_cache)
    else:
        from secretary.conversation.remote import RemoteSpeaker

        speaker = RemoteSpeaker(ui.tts_url, timeout, key)

    animator: Animator | None = None
    fps, size, quality = (conversation.avatar_fps, conversation.avatar_size,
                          conversation.avatar_jpeg_quality)
    if conversation.avatar and conversation.stage("avatar") == "local":
        from secretary.avatar.app import create_engine
        from secretary.conversation.local import LocalAnimator

        # SECRETARY_AVATAR_ENGINE's engine: mesh warp on a laptop, LivePortrait on a GPU.
        animator = LocalAnimator(create_engine(settings), fps, size, quality)
    elif conversation.avatar:
        from secretary.conversation.remote import RemoteAnimator

        animator = RemoteAnimator(ui.avatar_url, timeout, fps, size, quality, key)

    options = PipelineOptions(sentence_pause=conversation.sentence_pause_ms / 1000,
                              max_sentence_chars=settings.tts.max_sentence_chars,
                              first_clause_chars=conversation.first_clause_chars,
                              first_words=conversation.first_words)
    return Pipeline(transcriber, build_brain(settings), speaker, animator, metrics, options)


def build_face_engine(settings: Settings, pipeline: Pipeline) -> Any:
    """The avatar engine that draws the face live in this process: the pipeline's own
    where it animates here, else the embedded mesh warp, loaded."""
    engine = getattr(pipeline.animator, "engine", None)
    if engine is None:
        from secretary.avatar.meshwarp import MeshWarpEngine
        from secretary.avatar.models import FaceLandmarkerModel

        engine = MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir))
        engine.load()
    return engine
