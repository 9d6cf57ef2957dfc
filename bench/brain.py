"""The reply brain's time to first token against llama.cpp's server with SmolLM2-135M.

    python bench/brain.py [--threads 1 2] [--rounds 3]

The model and server the tests use (tests/conversation/llama.py); the first token is timed
through ``ChatBrain``, the streaming client the conversation uses, from the request to the
first text delta, over a few spoken-style questions; medians per thread count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conversation.llama import MODEL_NAME, llama_server  # noqa: E402

from secretary.config import UiSettings  # noqa: E402
from secretary.conversation.brain import ChatBrain, History  # noqa: E402
from secretary.conversation.stages import Cancel, Heard  # noqa: E402

QUESTIONS = ("What should I cook for dinner tonight?", "When is my next meeting?",
             "Please remind me to call the bank tomorrow.", "How is the weather today?")


async def measure(url: str, rounds: int) -> tuple[list[float], list[float]]:
    firsts, rates = [], []
    prompt = UiSettings().system_prompt
    for _ in range(rounds):
        for question in QUESTIONS:
            brain = ChatBrain(url, MODEL_NAME, prompt, History(0, 1), max_tokens=60,
                              temperature=0.0)
            started = time.perf_counter()
            first = None
            count = 0
            async for _ in brain.reply("bench", Heard(question, "en", 1.0, 1.0), Cancel()):
                first = first or time.perf_counter() - started
                count += 1
            total = time.perf_counter() - started
            await brain.aclose()
            firsts.append(first or total)
            rates.append((count - 1) / max(total - (first or 0), 1e-6))
    return firsts, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("| threads | time to first token, median (min-max) | tokens/s after it |")
    print("|---|---|---|")
    for threads in args.threads:
        with llama_server(threads=threads) as url:
            asyncio.run(measure(url, 1))  # warm-up: the model's first pages
            firsts, rates = asyncio.run(measure(url, args.rounds))
        print(f"| {threads} | {statistics.median(firsts):.3f} s ({min(firsts):.3f}-"
              f"{max(firsts):.3f}) | {statistics.median(rates):.0f} |", flush=True)


if __name__ == "__main__":
    main()
