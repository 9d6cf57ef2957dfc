"""The services on a real Ray cluster of two nodes (one CPU each, on this machine), with
the embedded models: the OpenAI clients through Serve's proxy get what the single-machine
services give, replicas sit on both nodes, a realtime session over WebSocket completes a
spoken turn with its transcript and speech called through deployment handles (no HTTP
hop), the autoscaler adds replicas under a burst, a replica removed on scale-down finishes
its request in flight, and a replica killed during a request gives a clear error, never an
empty 200.

One cluster for the module (about 25 s to start and deploy); the test that kills replicas
runs last.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import ray
import ray._private.services as ray_services
from openai import OpenAI
from ray import serve
from ray.cluster_utils import Cluster

from secretary.config import Settings
from secretary.scale import proxy
from secretary.scale.deployments import service_deployment
from secretary.scale.run import deploy
from tests.conftest import make_settings, same_speech_every_run
from tests.helpers import SPEECH, free_port, running_server
from tests.realtime import support

CLIP = SPEECH / "en_cmu_arctic_aew_a0001.wav"
LONG_CLIP = SPEECH / "en_librispeech_1272-128104-0000_quilter.wav"
SERVICES = ["stt", "tts", "realtime"]
# Serve's autoscaling metrics every half second, so a burst is seen within the test.
_RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    proxy.ENVIRONMENT: proxy.CALLBACK,
}


def cluster_settings(cache_dir: Path) -> Settings:
    settings = make_settings(cache_dir)
    same_speech_every_run(settings)
    settings.conversation.avatar = False
    settings.realtime.face = False
    settings.realtime.max_sessions = 2
    ray_settings = settings.ray
    ray_settings.port = free_port()
    # Two speech-to-text replicas from the start (one per node), a third under load.
    ray_settings.min_replicas = "stt=2,*=1"
    ray_settings.max_replicas = "stt=3,*=1"
    ray_settings.target_ongoing_requests = "stt=1"
    ray_settings.cpus = "*=0.25"
    ray_settings.upscale_delay_s = 0.5
    ray_settings.downscale_delay_s = 3.0
    ray_settings.metrics_window_s = 2.0
    # Final transcripts (the realtime turns', the test's own) are batched.
    ray_settings.stt_batch_size = 4
    ray_settings.stt_batch_wait_ms = 50
    return settings


class _PopenWithoutPreexec(ray_services.ConsolePopen):
    """Ray starts its node processes with a ``preexec_fn``, so CPython forks this process and
    runs Python in the child before exec: it clears the other threads' states there, and an
    object one of them held (a PyAV reformatter from the WebRTC tests) is freed in the child,
    where freeing it waits on threads that no longer exist. The suite's process has many
    threads by now, and the child hung before exec. Without it the child runs no Python
    (the nodes lose only Ray's fate-sharing with this process; the fixture stops them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["preexec_fn"] = None
        super().__init__(*args, **kwargs)


@pytest.fixture(scope="module")
def cluster(cache_dir: Path) -> Iterator[tuple[str, Settings]]:
    """A two-node cluster with stt, tts and realtime deployed: (proxy URL, settings)."""
    saved = {k: os.environ.get(k) for k in _RAY_ENVIRONMENT}
    os.environ.update(_RAY_ENVIRONMENT)  # the nodes' processes inherit it
    console_popen = ray_services.ConsolePopen
    ray_services.ConsolePopen = _PopenWithoutPreexec
    try:
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    except BaseException:
        ray_services.ConsolePopen = console_popen
        raise
    try:
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address)
        settings = cluster_settings(cache_dir)
        deploy(settings, SERVICES)
        yield f"http://127.0.0.1:{settings.ray.port}", settings
    finally:
        try:
            serve.shutdown()
            ray.shutdown()
        finally:
            nodes.shutdown()
            ray_services.ConsolePopen = console_popen
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def replicas(service: str) -> dict[str, str]:
    """The running replicas of ``service``: actor name -> node id."""
    found = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{service}#"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            try:
                found[actor["name"]] = ray.get(handle.__ray_call__.remote(
                    lambda _: ray.get_runtime_context().get_node_id()), timeout=10)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                continue  # stopping
    return found


def running(service: str) -> int:
    return serve.status().applications[service].deployments[service].replica_states.get(
        "RUNNING", 0)


def test_transcript_through_the_proxy_equals_the_single_machine_service(
        cluster: tuple[str, Settings], cache_dir: Path) -> None:
    from secretary.stt.app import create_app

    url, _ = cluster
    with running_server(create_app(make_settings(cache_dir))) as single:
        expected = OpenAI(base_url=f"{single}/v1", api_key="unused").audio.transcriptions
        with CLIP.open("rb") as f:
            alone = expected.create(model="whisper-1", file=f, response_format="verbose_json")
    scaled = OpenAI(base_url=f"{url}/stt/v1", api_key="unused", max_retries=0)
    with CLIP.open("rb") as f:
        served = scaled.audio.transcriptions.create(model="whisper-1", file=f,
                                                    response_format="verbose_json")
    assert served.text == alone.text and "danger trail" in served.text.lower()
    assert [s.text for s in served.segments] == [s.text for s in alone.segments]


def test_speech_through_the_proxy_equals_the_single_machine_service(
        cluster: tuple[str, Settings], cache_dir: Path) -> None:
    from secretary.tts.app import create_app

    url, settings = cluster
    text = "Your meeting with Anna starts at three."
    single_settings = make_settings(cache_dir)
    same_speech_every_run(single_settings)
    with running_server(create_app(single_settings)) as single:
        alone = OpenAI(base_url=f"{single}/v1", api_key="unused").audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm").content
    served = OpenAI(base_url=f"{url}/tts/v1", api_key="unused", max_retries=0).audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm").content
    assert len(served) > 24000  # over half a second of 24 kHz 16-bit speech
    a = np.frombuffer(alone, "<i2").astype(np.float32)
    b = np.frombuffer(served, "<i2").astype(np.float32)
    # Piper's phoneme lengths are fixed (noise_w 0); its other noise is not seeded, so the
    # same speech means the same length and loudness, not the same samples.
    assert len(a) == len(b)
    rms_a, rms_b = np.sqrt(np.mean(a**2)), np.sqrt(np.mean(b**2))
    assert abs(rms_a - rms_b) <= 0.25 * rms_a  # measured: 3737 to 4099 on four runs


def test_the_same_paths_and_openapi_document_under_each_prefix(
        cluster: tuple[str, Settings], cache_dir: Path) -> None:
    from secretary.stt.app import create_app

    url, _ = cluster
    served = httpx.get(f"{url}/stt/openapi.json", timeout=10).json()
    own = create_app(make_settings(cache_dir)).openapi()
    served.pop("servers", None)  # names the prefix, for clients that resolve paths
    assert served == own
    for service in SERVICES:
        health = httpx.get(f"{url}/{service}/health", timeout=10)
        assert health.status_code == 200 and health.json()["service"] == service
    models = httpx.get(f"{url}/stt/v1/models", timeout=10).json()
    assert "whisper-1" in [m["id"] for m in models["data"]]
    missing = httpx.get(f"{url}/stt/v1/models/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"]


def test_replicas_run_on_both_nodes(cluster: tuple[str, Settings]) -> None:
    placed = replicas("stt")
    assert len(placed) >= 2
    assert len(set(placed.values())) == 2, placed
    assert len(ray.nodes()) == 2


def handle_calls(url: str, service: str, method: str) -> float:
    """Calls of ``method`` through deployment handles, summed over the replicas of
    ``service`` (each counts its own: asked until every one has answered)."""
    seen: dict[str, float] = {}
    for _ in range(20):
        text = httpx.get(f"{url}/{service}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("secretary_serve_handle_calls_total{") and \
                    f'method="{method}"' in line:
                labels, value = line.rsplit(" ", 1)
                seen[labels] = float(value)
    return sum(seen.values())


def http_finals(url: str) -> float:
    """``POST /transcribe`` requests answered by the speech-to-text replicas (most seen:
    each replica counts its own)."""
    most = 0.0
    for _ in range(20):
        text = httpx.get(f"{url}/stt/metrics", timeout=10).text
        most = max([most] + [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                             if line.startswith("secretary_http_requests_total{")
                             and 'route="' in line and 'transcribe"' in line])
    return most


async def test_realtime_session_over_websocket_through_the_proxy_completes_a_turn(
        cluster: tuple[str, Settings]) -> None:
    url, _ = cluster
    async with httpx.AsyncClient(timeout=10) as client:
        health = (await client.get(f"{url}/realtime/health")).json()
    # Its stages are the stt and tts deployments, called by deployment handle.
    stages = health["stages"]
    assert stages["transcribe"] == {"where": "ray-serve:stt/stt", "via": "deployment handle"}
    assert stages["speech"] == {"where": "ray-serve:tts/tts", "via": "deployment handle"}
    transcribed = await asyncio.to_thread(handle_calls, url, "stt", "transcribe")
    spoken = await asyncio.to_thread(handle_calls, url, "tts", "speak")
    finals = await asyncio.to_thread(http_finals, url)
    async with support.connect(f"{url}/realtime") as connection:
        await support.collect(connection, "session.created")
        await connection.session.update(session={
            "type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": 500}}}})
        await support.collect(connection, "session.updated")
        events: list = []
        sender = asyncio.create_task(support.feed(connection, support.clip(CLIP.name),
                                                  speed=4.0))
        await support.collect(connection, "input_audio_buffer.speech_started", events=events)
        await sender
        await support.feed(connection, support.silence(1.2), speed=4.0)
        await support.collect(connection, "response.done", events=events, wait=120)
    heard = support.of_type(
        events, "conversation.item.input_audio_transcription.completed")[0].transcript
    assert "danger trail" in heard.lower()
    done = support.of_type(events, "response.done")[0].response
    assert done.status == "completed"
    said = support.of_type(events, "response.output_audio_transcript.done")[0].transcript
    assert "danger trail" in said.lower()  # the echo brain reads the transcript back
    assert len(support.reply_audio(events)) > 24000
    # The transcript and the speech came through the handles, not the HTTP routes.
    assert await asyncio.to_thread(handle_calls, url, "stt", "transcribe") > transcribed
    assert await asyncio.to_thread(handle_calls, url, "tts", "speak") > spoken
    assert await asyncio.to_thread(http_finals, url) == finals


async def test_a_full_realtime_deployment_refuses_a_session_as_one_machine_does(
        cluster: tuple[str, Settings]) -> None:
    import json

    import websockets

    url, _ = cluster
    # One realtime replica of two sessions here: its capacity is three requests, the
    # third session reaches it and is refused in the protocol's own terms.
    async with support.connect(f"{url}/realtime") as first, \
            support.connect(f"{url}/realtime") as second:
        await support.collect(first, "session.created")
        await support.collect(second, "session.created")
        ws = url.replace("http://", "ws://") + "/realtime/v1/realtime"
        async with websockets.connect(ws) as third:
            event = json.loads(await asyncio.wait_for(third.recv(), 30))
            assert event["type"] == "error"
            assert event["error"]["code"] == "session_limit_reached"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(third.recv(), 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    async with support.connect(f"{url}/realtime") as again:  # the places are free again
        assert support.of_type(await support.collect(again, "session.created"),
                               "session.created")


def batches(url: str) -> tuple[float, float]:
    """(batches, batches of more than one clip) in the metrics of the replica that
    answers."""
    text = httpx.get(f"{url}/stt/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith("secretary_stt_batch_size_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    count = values.get("secretary_stt_batch_size_count", 0.0)
    return count, count - values.get('secretary_stt_batch_size_bucket{le="1.0"}', 0.0)


def test_concurrent_finals_are_batched_and_equal_each_alone(
        cluster: tuple[str, Settings]) -> None:
    url, _ = cluster
    names = ["en_cmu_arctic_aew_a0003.wav", "de_thorsten_schoko_bonbons.wav",
             "fr_cheetah_mer_jaune.wav", "es_leopard_arenas.wav"] * 2

    def final(name: str) -> str:
        answer = httpx.post(f"{url}/stt/transcribe", data={"final": "true"}, timeout=120,
                            files={"file": ("a.wav", (SPEECH / name).read_bytes(),
                                            "audio/wav")})
        assert answer.status_code == 200, answer.text
        return answer.json()["text"]

    # One at a time: each final is a batch of its own (the engine's own decode, as
    # tests/scale/test_batching.py shows), on the replicas' threads.
    alone = {name: final(name) for name in set(names)}
    before = max(batches(url)[1] for _ in range(20))
    texts: dict[int, str] = {}
    callers = [threading.Thread(target=lambda i=i: texts.__setitem__(i, final(names[i])))
               for i in range(len(names))]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    assert [texts[i] for i in range(len(names))] == [alone[n] for n in names]
    # Each replica counts its own batches: ask until both have answered.
    grouped = max(batches(url)[1] for _ in range(20))
    assert grouped > before, "no batch of more than one final formed"


LONG_TEXT = " ".join([
    "The quarterly report covers the sales figures of every region in some detail.",
    "Each office sent its numbers on time, and the totals were checked twice.",
    "Next week the team meets on Tuesday morning to plan the following quarter.",
    "Please bring the printed summary and any questions you would like to raise.",
] * 20)  # about 6,000 characters: some five minutes of speech, tens of seconds to make


def states(app: str) -> dict[str, int]:
    found = serve.status().applications[app].deployments["tts"].replica_states
    return {getattr(state, "value", state): count for state, count in found.items()}


def test_a_replica_removed_on_scale_down_finishes_its_request_in_flight(
        cluster: tuple[str, Settings]) -> None:
    """Speech on an application of its own on the cluster: one request per replica at
    a time, grown to two replicas by a burst; then two long syntheses hold one replica
    each, which is below the target of two per replica, so one replica is removed while
    its synthesis streams: it finishes it, whole, before it stops."""
    url, settings = cluster
    drain = settings.model_copy(deep=True)
    drain.tts.max_concurrency, drain.tts.max_queue = 1, 0  # one request per replica
    drain.tts.max_text_chars = len(LONG_TEXT)
    ray_settings = drain.ray
    ray_settings.min_replicas = "*=1"
    ray_settings.max_replicas = "tts=2,*=1"
    ray_settings.target_ongoing_requests = "tts=2"
    ray_settings.upscale_delay_s = 0.3
    ray_settings.downscale_delay_s = 1.0
    ray_settings.metrics_window_s = 1.0
    ray_settings.graceful_shutdown_s = 120.0
    options = service_deployment(drain, "tts", ["tts"])
    serve.run(options, name="drain", route_prefix="/drain")
    try:
        body = {"text": LONG_TEXT, "language": "en", "format": "pcm", "stream": True}
        stop = threading.Event()

        def short() -> None:
            while not stop.is_set():
                httpx.post(f"{url}/drain/synthesize", timeout=120,
                           json={"text": "Hello there.", "format": "pcm"})

        burst = [threading.Thread(target=short) for _ in range(6)]
        for thread in burst:
            thread.start()
        deadline = time.monotonic() + 60
        while states("drain").get("RUNNING", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states("drain").get("RUNNING", 0) == 2, "the burst did not add a replica"

        started: list[float] = []
        finished: dict[int, tuple[float, bytes]] = {}

        def long(index: int) -> None:
            with httpx.stream("POST", f"{url}/drain/synthesize", json=body,
                              timeout=300) as answer:
                assert answer.status_code == 200, answer.read()
                started.append(time.monotonic())
                data = b"".join(answer.iter_bytes())
            finished[index] = (time.monotonic(), data)

        # The load stops; at once two long syntheses start, each on a replica of its own
        # (one request per replica), below the target: one replica is to go.
        stop.set()
        for thread in burst:
            thread.join()
        longs = [threading.Thread(target=long, args=(i,)) for i in range(2)]
        for thread in longs:
            thread.start()
        stopping_seen = None
        while any(t.is_alive() for t in longs):
            now = states("drain")
            if stopping_seen is None and (now.get("STOPPING", 0) or now.get("RUNNING", 0) < 2):
                stopping_seen = time.monotonic()
            time.sleep(0.1)
        for thread in longs:
            thread.join()
        assert len(started) == 2 and stopping_seen is not None, \
            "no replica was removed during the syntheses"
        # It was removed while both syntheses streamed, one on each replica.
        assert max(started) < stopping_seen < min(at for at, _ in finished.values())
        # Both whole: the same length as the text synthesized again on the replica left.
        again = httpx.post(f"{url}/drain/synthesize", timeout=300,
                           json={**body, "stream": False}).content
        assert len(again) > 44100 * 240  # over four minutes of 22.05 kHz 16-bit speech
        assert [len(data) for _, data in finished.values()] == [len(again)] * 2
        deadline = time.monotonic() + 60
        while states("drain").get("RUNNING", 0) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states("drain") == {"RUNNING": 1}
    finally:
        serve.delete("drain")


def test_a_burst_adds_replicas_and_they_go_again(cluster: tuple[str, Settings]) -> None:
    url, _ = cluster
    data = CLIP.read_bytes()
    statuses: list[int] = []

    def ask() -> None:
        answer = httpx.post(f"{url}/stt/v1/audio/transcriptions",
                            files={"file": ("a.wav", data, "audio/wav")}, timeout=120)
        statuses.append(answer.status_code)

    most = running("stt")
    deadline = time.monotonic() + 60
    while most < 3 and time.monotonic() < deadline:
        burst = [threading.Thread(target=ask) for _ in range(8)]
        for thread in burst:
            thread.start()
        while any(t.is_alive() for t in burst):
            most = max(most, running("stt"))
            time.sleep(0.2)
    assert most == 3, "the autoscaler did not add a replica under the burst"
    assert set(statuses) == {200}
    deadline = time.monotonic() + 60
    while running("stt") > 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running("stt") == 2


def test_a_replica_killed_during_a_request_gives_a_clear_error_then_comes_back(
        cluster: tuple[str, Settings]) -> None:
    url, _ = cluster
    data = LONG_CLIP.read_bytes()
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(httpx.post(f"{url}/stt/v1/audio/transcriptions",
                                  files={"file": ("a.wav", data, "audio/wav")}, timeout=120))

    before = replicas("stt")
    pids = [ray.get(ray.get_actor(name, namespace="serve").__ray_call__.remote(
        lambda _: os.getpid())) for name in before]
    callers = [threading.Thread(target=ask) for _ in range(len(pids))]
    for thread in callers:
        thread.start()
    time.sleep(0.8)  # the requests are being decoded
    for pid in pids:  # every replica dies: whichever had a request, it is cut off
        os.kill(pid, signal.SIGKILL)
    for thread in callers:
        thread.join()

    for answer in answers:
        if answer.status_code == 200:  # served before the kill or retried: whole
            assert "quilter" in answer.json()["text"].lower()
            continue
        assert answer.status_code >= 500
        error = answer.json()["error"]
        assert error["code"] == "replica_failed" and error["message"]
    assert any(a.status_code != 200 for a in answers)

    # Replaced: the next request is held until a replica is back, then served.
    again = httpx.post(f"{url}/stt/v1/audio/transcriptions",
                       files={"file": ("a.wav", CLIP.read_bytes(), "audio/wav")}, timeout=120)
    assert again.status_code == 200 and "danger trail" in again.json()["text"].lower()
    deadline = time.monotonic() + 60
    after = replicas("stt")
    while (running("stt") < 2 or len(after) < 2) and time.monotonic() < deadline:
        time.sleep(0.5)
        after = replicas("stt")
    assert len(after) >= 2 and not set(after) & set(before)
