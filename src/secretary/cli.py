"""The ``secretary`` command: serve the stack, transcribe files, manage models."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from secretary.config import Settings, describe_invalid
from secretary.errors import SecretaryError

if TYPE_CHECKING:
    from secretary.stt.engine import Transcription


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from secretary.launcher import select_services, serve

    if args.host:
        settings.host = args.host
    specs = select_services(args.only)
    asyncio.run(serve(settings, specs))
    return 0


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from secretary import audio
    from secretary.stt.engine import Transcription, TranscriptionOptions
    from secretary.stt.models import WhisperModels
    from secretary.stt.whisper import WhisperEngine

    if args.model:
        settings.stt.model = args.model
    engine = WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
    engine.load()
    options = TranscriptionOptions(
        language=args.language,
        task=args.task,
        word_timestamps=args.word_timestamps,
        vad_filter=not args.no_vad,
    )
    status = 0
    for path in args.files:
        try:
            decoded = audio.decode(Path(path))
        except SecretaryError as exc:
            print(f"{path}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        info, segment_iter = engine.transcribe(decoded.samples, options)
        segments = []
        # Progress in seconds of audio; shown only where it helps (long files, a terminal).
        with tqdm(total=round(info.duration, 1), unit="s", desc=Path(path).name,
                  disable=info.duration < 30 or not sys.stderr.isatty(), leave=False) as bar:
            for segment in segment_iter:
                segments.append(segment)
                bar.update(round(segment.end - bar.n, 1))
        result = Transcription(info, segments)
        text = _render(result, args.format, args.task, args.word_timestamps)
        if args.output_dir:
            out_dir = Path(args.output_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            suffix = {"verbose_json": "json", "text": "txt"}.get(args.format, args.format)
            (out_dir / f"{Path(path).stem}.{suffix}").write_text(text, encoding="utf-8")
        else:
            print(text)
    return status


def _render(result: Transcription, fmt: str, task: str, words: bool) -> str:
    from secretary.stt import formats

    if fmt == "text":
        return result.text
    if fmt == "srt":
        return formats.to_srt(result.segments)
    if fmt == "vtt":
        return formats.to_vtt(result.segments)
    if fmt == "verbose_json":
        return json.dumps(formats.verbose_json(result, task, words=words), ensure_ascii=False,
                          indent=2)
    return json.dumps({"text": result.text, "language": result.info.language},
                      ensure_ascii=False)


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from secretary.catalog import ModelStore

    store = ModelStore(settings.models_dir)
    if args.models_command == "list":
        for row in store.list():
            mark = "yes" if row["available"] else "no"
            print(f"{row['name']:<18} {row['kind']:<6} {row['source']:<8} available={mark:<4} "
                  f"{row['description']}")
        return 0
    if args.name in ("liveportrait", "KwaiVGI/LivePortrait"):
        print(store.liveportrait_weights())
        return 0
    path = store.whisper_path(args.name)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secretary", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the services (all of them by default)")
    serve.add_argument("--only", help="comma-separated service names, e.g. stt,tts")
    serve.add_argument("--host", help="address to listen on (default SECRETARY_HOST)")
    serve.set_defaults(handler=_serve)

    tr = sub.add_parser("transcribe", help="transcribe audio files with the STT engine")
    tr.add_argument("files", nargs="+")
    tr.add_argument("--model", help="model name, hub id or folder (default SECRETARY_STT_MODEL)")
    tr.add_argument("--language", help="ISO code; detected when left out")
    tr.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    tr.add_argument("--format", choices=("text", "json", "srt", "vtt", "verbose_json"),
                    default="text")
    tr.add_argument("--word-timestamps", action="store_true")
    tr.add_argument("--no-vad", action="store_true", help="do not filter out non-speech")
    tr.add_argument("--output-dir", help="write one file per input here instead of printing")
    tr.set_defaults(handler=_transcribe)

    models = sub.add_parser("models", help="list or fetch models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="known models and whether they are available here")
    pull = models_sub.add_parser("pull", help="assemble or download a model into the cache")
    pull.add_argument("name")
    models.set_defaults(handler=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"secretary: invalid configuration (SECRETARY_* variables or .env): "
              f"{describe_invalid(exc)}", file=sys.stderr)
        return 2
    try:
        return args.handler(args, settings)
    except SecretaryError as exc:
        print(f"secretary: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
