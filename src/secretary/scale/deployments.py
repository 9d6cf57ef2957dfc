"""One Ray Serve deployment per service, around the same FastAPI app the service serves on
its own port (``create_app(settings)`` through the launcher's registry).

Each replica builds its app once it runs on its node (``serve.ingress`` late-bound: the
app, its models and thread pools are made there, never pickled). The conversation (ui)
and realtime replicas call speech-to-text and speech through deployment handles
(``scale.handles``: Python calls to the stt and tts replicas, whose ``transcribe`` and
``speak`` methods are here; ``SECRETARY_RAY_STAGE_CALLS=http`` goes back to HTTP), and
the avatar through Serve's proxy on their own node at ``/avatar``; either way a stage is
answered by whichever replica Serve's router picks, on any node.

How much each replica takes is derived from the service's own limits: a replica is sent
at most its queue capacity (``max_concurrency + max_queue``; a realtime replica its
``max_sessions``, plus one that it refuses in the protocol's own terms), and the
autoscaler aims at the engine's concurrency per replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from ray import serve
from starlette.types import ASGIApp, Receive, Scope, Send

from secretary.config import Settings
from secretary.scale.handles import SPEAK, TRANSCRIBE, CalledServiceError

log = logging.getLogger(__name__)

# Paths the services' guard lets through without an API key (health probes, Prometheus):
# they must look the same under a route prefix as on the service's own port.
_OPEN_PATHS = ("/health", "/metrics")
# Requests a UI replica takes at once: its page's files and polls are light, and its turns
# have their own bound (SECRETARY_CONVERSATION_MAX_TURNS, a 503 past it).
_UI_CAPACITY = 64


def capacity(settings: Settings, service: str) -> tuple[int, float]:
    """(requests a replica of ``service`` takes at once, the autoscaler's default target
    of ongoing requests per replica)."""
    if service == "realtime":
        sessions = settings.realtime.max_sessions
        # One over: a replica that is full refuses it with session_limit_reached, as the
        # single machine does. The target is below full so replicas are added before then.
        return sessions + 1, max(1.0, 0.75 * sessions)
    if service == "ui":
        return _UI_CAPACITY, float(settings.conversation.max_turns)
    group = getattr(settings, service)
    concurrency = group.max_concurrency
    if service == "stt" and settings.ray.stt_batch_size > 1:
        concurrency = max(concurrency, settings.ray.stt_batch_size)
    return concurrency + group.max_queue, float(concurrency)


def secretary_environment() -> dict[str, str]:
    """The ``SECRETARY_*`` variables of this process, for the replicas' processes (any
    settings built there read what the command was started with, on every node)."""
    return {k: v for k, v in os.environ.items() if k.startswith("SECRETARY_")}


def deployment_options(settings: Settings, service: str) -> dict[str, Any]:
    """``Deployment.options`` of ``service``: replicas, autoscaling, resources, limits."""
    ray_settings = settings.ray
    low, high = ray_settings.replicas(service)
    cpus, gpus = ray_settings.resources(service)
    most, derived = capacity(settings, service)
    target = ray_settings.target(service) or derived
    actor: dict[str, Any] = {"num_cpus": cpus,
                             "runtime_env": {"env_vars": secretary_environment()}}
    if gpus:
        actor["num_gpus"] = gpus
    return {
        "name": service,
        "max_ongoing_requests": most,
        "max_queued_requests": ray_settings.max_queued_requests,
        "autoscaling_config": {
            "min_replicas": low,
            "initial_replicas": max(low, 1),
            "max_replicas": high,
            "target_ongoing_requests": target,
            "upscale_delay_s": ray_settings.upscale_delay_s,
            "downscale_delay_s": ray_settings.downscale_delay_s,
            "look_back_period_s": ray_settings.metrics_window_s,
        },
        "graceful_shutdown_timeout_s": ray_settings.graceful_shutdown_s,
        # Loading a model may take minutes on first start (downloads).
        "health_check_timeout_s": 60.0,
        "ray_actor_options": actor,
    }


def proxy_url(settings: Settings) -> str:
    """Serve's proxy on this replica's node, as the replica calls it."""
    host = settings.host.strip("[]")
    if host in ("", "0.0.0.0", "::", "localhost") or host.startswith("127.") or host == "::1":
        host = "127.0.0.1"
    else:  # listening on one address: this node's
        import ray

        host = ray.util.get_node_ip_address()
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.ray.port}"


def handle_stages(settings: Settings, service: str, deployed: Sequence[str]) -> tuple[str, ...]:
    """The stages a replica of ``service`` calls through deployment handles: speech-to-text
    and speech where they are deployed here and no setting chose their address or kind
    (the avatar stays on HTTP: its service answers whole clips, see the README)."""
    if service not in ("ui", "realtime") or settings.ray.stage_calls != "handle":
        return ()
    chosen = settings.conversation.model_fields_set
    return tuple(stage for stage in ("stt", "tts") if stage in deployed
                 and f"{stage}_url" not in settings.ui.model_fields_set
                 and "stages" not in chosen and f"{stage}_stage" not in chosen)


def replica_settings(settings: Settings, service: str, deployed: Sequence[str],
                     proxy: str) -> Settings:
    """The settings a replica of ``service`` runs with: the conversation's stages that are
    deployed here are called through the proxy (unless a setting says otherwise)."""
    settings = settings.model_copy(deep=True)
    if service in ("ui", "realtime"):
        ui, conversation = settings.ui, settings.conversation
        chosen = conversation.model_fields_set
        for stage in ("stt", "tts", "avatar", "realtime"):
            if stage not in deployed or f"{stage}_url" in ui.model_fields_set:
                continue
            setattr(ui, f"{stage}_url", proxy + settings.ray.route_prefix(stage))
            if stage != "realtime" and "stages" not in chosen and f"{stage}_stage" not in chosen:
                setattr(conversation, f"{stage}_stage", "remote")
    if service == "stt" and settings.ray.stt_batch_size > 1:
        # Requests run side by side so that their finals can meet in a batch.
        settings.stt.max_concurrency = max(settings.stt.max_concurrency,
                                           settings.ray.stt_batch_size)
    return settings


class OpenPaths:
    """ASGI: under a route prefix, ``/health`` and ``/metrics`` reach the app as on its own
    port (the services' guard matches them by path: probes and Prometheus need no key).
    Every other request keeps its full path, so URLs built from it carry the prefix."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # routes, state...: Serve reads the app's
        if name == "app":  # not set yet
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        path = scope.get("path", "")
        if root and path.startswith(root) and path[len(root):] in _OPEN_PATHS:
            scope = dict(scope, path=path[len(root):])
        await self.app(scope, receive, send)


def build_app(service: str, settings: Settings, handles: Sequence[str] = ()) -> ASGIApp:
    """The service's FastAPI app as its own port serves it (speech-to-text with batched
    finals where SECRETARY_RAY_STT_BATCH_SIZE asks; the conversation's ``handles`` stages
    called through deployment handles)."""
    from secretary.launcher import SERVICES

    if service == "stt" and settings.ray.stt_batch_size > 1:
        from secretary.scale.batching import create_batched_stt_app

        return create_batched_stt_app(settings)
    if handles and service == "realtime":
        from secretary.realtime.app import create_app as create_realtime_app
        from secretary.realtime.service import RealtimeService

        realtime = RealtimeService(settings)
        # Its pipeline, on its own turn metrics, with the handle stages.
        realtime._pipeline = handle_pipeline(settings, realtime.metrics, handles)
        return create_realtime_app(settings, realtime)
    if handles and service == "ui":
        from secretary.conversation.metrics import TurnMetrics
        from secretary.conversation.service import ConversationService
        from secretary.ui.app import DEFAULT_PORTRAIT, STATIC
        from secretary.ui.app import create_app as create_ui_app

        metrics = TurnMetrics()
        conversation = ConversationService(settings, metrics,
                                           (STATIC / DEFAULT_PORTRAIT).read_bytes(),
                                           handle_pipeline(settings, metrics, handles))
        return create_ui_app(settings, conversation)
    return SERVICES[service].create_app(settings)


def handle_pipeline(settings: Settings, metrics: Any, handles: Sequence[str]) -> Any:
    """The conversation's pipeline as the settings build it, with the ``handles`` stages
    (stt, tts) calling their deployments by handle."""
    from secretary.conversation.build import build_pipeline
    from secretary.scale.handles import HandleSpeaker, HandleTranscriber

    pipeline = build_pipeline(settings, metrics)
    if "stt" in handles:
        pipeline.transcriber = HandleTranscriber("stt")
    if "tts" in handles:
        pipeline.speaker = HandleSpeaker("tts")
    return pipeline


@serve.deployment
@serve.ingress()
class ServiceReplica:
    """A replica of one service: its app is built on the replica's node, at start."""

    def __init__(self, service: str, settings: Settings, deployed: Sequence[str]) -> None:
        self.service = service
        self.settings = settings
        self.deployed = tuple(deployed)
        self.built: Any = None

    async def __serve_build_asgi_app__(self) -> ASGIApp:
        from prometheus_client import CollectorRegistry, Counter

        settings = replica_settings(self.settings, self.service, self.deployed,
                                    proxy_url(self.settings))
        replica = serve.get_replica_context().replica_id.unique_id
        log.info("replica %s of %s starting", replica, self.service)
        handles = handle_stages(self.settings, self.service, self.deployed)
        self.built = build_app(self.service, settings, handles)
        registry = CollectorRegistry()
        self.handle_calls = Counter(
            "secretary_serve_handle_calls", "Calls to this replica through deployment "
            "handles (the conversation's and realtime's stages), by method.",
            ["method", "replica"], registry=registry).labels
        self.replica = replica
        self.built.state.metrics.include(registry)
        return OpenPaths(self.built)

    def _called(self, method: str, service: str) -> Any:
        """The replica's service for a handle call of ``method`` (a 404 where this replica
        runs another service)."""
        if self.service != service:
            raise CalledServiceError(404, "not_found", f"{method} is a method of the "
                                     f"{service} deployment, not of {self.service}")
        self.handle_calls(method, self.replica).inc()
        return self.built.state.service

    async def transcribe(self, samples: Any, language: str | None) -> Any:
        """Handle method of speech-to-text: the final transcript of one utterance (16 kHz
        mono float32) as a ``Heard``; errors are ``CalledServiceError``s."""
        from secretary.scale.handles import transcribe_final

        service = self._called(TRANSCRIBE, "stt")
        batcher = getattr(self.built, "batcher", None)
        if batcher is not None and batcher.loop is None:  # finals batch on this loop
            batcher.loop = asyncio.get_running_loop()
        return await transcribe_final(service, samples, language)

    async def speak(self, text: str, language: str | None, voice: str | None) -> Any:
        """Handle method of speech (streamed: ``handle.options(stream=True)``): the text's
        audio as (float32 samples, sample rate) pieces."""
        from secretary.scale.handles import speech_chunks

        service = self._called(SPEAK, "tts")
        async for piece in speech_chunks(service, text, language, voice):
            yield piece


def service_deployment(settings: Settings, service: str, deployed: Sequence[str]) -> Any:
    """The bound deployment of ``service`` (an application with one deployment)."""
    options = deployment_options(settings, service)
    return ServiceReplica.options(**options).bind(service, settings, tuple(deployed))
