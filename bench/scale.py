"""Throughput and latency of the services on Ray Serve against the single-machine stack, in
one run, and the cost of Serve's proxy per request.

    python bench/scale.py [--levels 1,4,16] [--requests 2]

Three setups, started one after the other with the same models and settings, each
measured the same way:
  single      ``secretary serve --only stt,tts`` (the real command: one process per
              service, each on its own port),
  serve-1     ``secretary serve --ray local --only stt,tts`` (the real command: Ray on this
              machine as one node, one replica per service, Serve's proxy in front),
  serve-2     a local Ray cluster of two nodes (``ray.cluster_utils.Cluster``, half the
              cores each) with two replicas per service, one per node.
For each: transcriptions (``POST /v1/audio/transcriptions``, a 3.9 s clip, json) and
speech (``POST /v1/audio/speech``, one sentence, wav) at each concurrency level,
``requests x level`` requests per level (at least 8), after two warm-up requests;
requests per second (over the level's wall time) and the 95th percentile of latency.
The queues are made long enough (SECRETARY_*_MAX_QUEUE=64) that no request is refused.
The proxy's overhead: the median of 200 sequential ``GET /health`` through the proxy
minus the same on the service's own port (the route does no work).

On one machine the two nodes share its cores, so serve-2 measures what a second node
costs, not what it adds; capacity grows with real nodes, each with its own cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SPEECH, free_port  # noqa: E402

CLIP = SPEECH / "en_cmu_arctic_aew_a0001.wav"
SENTENCE = "Your meeting with Anna starts at three in the afternoon."
QUEUES = {"SECRETARY_STT_MAX_QUEUE": "64", "SECRETARY_TTS_MAX_QUEUE": "64"}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARY_")}
    return env | QUEUES | {"RAY_USAGE_STATS_ENABLED": "0"} | extra


def wait_until_up(url: str, process: subprocess.Popen | None = None,
                  timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the command ended: {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up")


@contextlib.contextmanager
def command(args: list[str], env: dict[str, str], urls: list[str]) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, "-m", "secretary", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for url in urls:
            wait_until_up(url, process)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def single() -> Iterator[tuple[str, str]]:
    stt, tts = free_port(), free_port()
    urls = [f"http://127.0.0.1:{stt}", f"http://127.0.0.1:{tts}"]
    env = environment(SECRETARY_STT_PORT=str(stt), SECRETARY_TTS_PORT=str(tts))
    with command(["serve", "--only", "stt,tts"], env, urls):
        yield urls[0], urls[1]


@contextlib.contextmanager
def serve_one_node() -> Iterator[tuple[str, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(SECRETARY_RAY_PORT=str(port), SECRETARY_RAY_MIN_REPLICAS="*=1",
                      SECRETARY_RAY_MAX_REPLICAS="*=1")
    with command(["serve", "--ray", "local", "--only", "stt,tts"], env,
                 [f"{base}/stt", f"{base}/tts"]):
        yield f"{base}/stt", f"{base}/tts"


@contextlib.contextmanager
def serve_two_nodes() -> Iterator[tuple[str, str]]:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from secretary.config import Settings
    from secretary.scale import proxy
    from secretary.scale.run import deploy

    cores = max(2, os.cpu_count() or 2)
    saved = dict(os.environ)
    os.environ.update(environment() | {proxy.ENVIRONMENT: proxy.CALLBACK})
    for key in [k for k in os.environ if k.startswith("SECRETARY_") and k not in QUEUES]:
        del os.environ[key]
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": cores // 2})
    try:
        nodes.add_node(num_cpus=cores - cores // 2)
        ray.init(address=nodes.address, logging_level="warning")
        settings = Settings(_env_file=None)
        settings.ray.port = free_port()
        settings.ray.max_replicas = "*=2"
        settings.ray.min_replicas = "*=2"
        deploy(settings, ["stt", "tts"])
        base = f"http://127.0.0.1:{settings.ray.port}"
        for url in (f"{base}/stt", f"{base}/tts"):
            wait_until_up(url)
        yield f"{base}/stt", f"{base}/tts"
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        nodes.shutdown()
        os.environ.clear()
        os.environ.update(saved)


async def level(client: httpx.AsyncClient, send, concurrency: int, total: int
                ) -> tuple[float, float, int]:
    """(requests per second, p95 seconds, failures) of ``total`` requests,
    ``concurrency`` at a time."""
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            answer = await send(client)
            latencies.append(time.perf_counter() - started)
            failures += answer.status_code != 200

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return total / wall, p95, failures


async def measure(stt: str, tts: str, levels: list[int], per_level: int) -> dict:
    clip = CLIP.read_bytes()

    async def transcribe(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{stt}/v1/audio/transcriptions",
                                 files={"file": ("clip.wav", clip, "audio/wav")})

    async def speak(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{tts}/v1/audio/speech", json={
            "model": "tts-1", "voice": "alloy", "input": SENTENCE, "response_format": "wav"})

    results: dict = {}
    limits = httpx.Limits(max_connections=max(levels) + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        for name, send in (("transcription", transcribe), ("speech", speak)):
            for _ in range(2):
                await send(client)
            for concurrency in levels:
                results[(name, concurrency)] = await level(
                    client, send, concurrency, max(8, per_level * concurrency))
        health = []
        for _ in range(200):
            started = time.perf_counter()
            await client.get(f"{stt}/health")
            health.append(time.perf_counter() - started)
    results["health"] = statistics.median(health)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--requests", type=int, default=2,
                        help="requests per level = this x the concurrency (at least 8)")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    setups = {"single": single, "serve-1": serve_one_node, "serve-2": serve_two_nodes}
    measured: dict[str, dict] = {}
    for name, setup in setups.items():
        started = time.perf_counter()
        with setup() as (stt, tts):
            up = time.perf_counter() - started
            measured[name] = asyncio.run(measure(stt, tts, levels, args.requests))
        print(f"{name}: up in {up:.1f} s, measured", file=sys.stderr, flush=True)

    names = list(setups)
    print(f"\n{os.cpu_count()} CPU cores; requests per second / p95 latency (s); "
          "ratio: requests per second against single\n")
    print("| request | concurrency | " + " | ".join(names) + " | serve-1 / single | "
          "serve-2 / single |")
    print("|---|---|" + "---|" * (len(names) + 2))
    for kind in ("transcription", "speech"):
        for concurrency in levels:
            cells, rates = [], []
            for name in names:
                rate, p95, failures = measured[name][(kind, concurrency)]
                rates.append(rate)
                cells.append(f"{rate:.2f} / {p95:.2f}" + (f" ({failures} failed)"
                                                          if failures else ""))
            print(f"| {kind} | {concurrency} | " + " | ".join(cells)
                  + f" | {rates[1] / rates[0]:.2f} | {rates[2] / rates[0]:.2f} |")
    own = measured["single"]["health"] * 1000
    for name in names[1:]:
        through = measured[name]["health"] * 1000
        print(f"\nGET /health, median of 200: own port {own:.2f} ms, through {name}'s proxy "
              f"{through:.2f} ms: the proxy adds {through - own:.2f} ms")


if __name__ == "__main__":
    main()
