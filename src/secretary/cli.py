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
    from secretary.launcher import select_services, serve, supervise, warn_if_open

    if args.host:
        settings.host = args.host
    specs = select_services(args.only)
    if not args.supervised:
        warn_if_open(settings)
    if args.ray is not None:
        from secretary.scale.run import serve_on_ray

        return serve_on_ray(settings, [spec.name for spec in specs], args.ray or None)
    if args.single_process:
        asyncio.run(serve(settings, specs))
        return 0
    return supervise(specs, args.host)


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


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return ""


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from secretary.catalog import ModelStore

    cache_dir = Path(args.to).expanduser() if getattr(args, "to", None) else settings.cache_dir
    store = ModelStore(cache_dir / "models")
    if args.models_command == "list":
        print(f"{'name':<18} {'kind':<6} {'source':<8} {'here':<5} {'size':>9}  description")
        order = {"stt": 0, "tts": 1, "avatar": 2}
        for row in sorted(store.list(), key=lambda r: order.get(str(r["kind"]), 3)):
            here = "yes" if row["available"] else "no"
            size = _size(int(row["bytes"])) if row["available"] else ""  # type: ignore[call-overload]
            print(f"{row['name']:<18} {row['kind']:<6} {row['source']:<8} {here:<5} {size:>9}  "
                  f"{row['description']}")
        print(f"cache: {store.root}")
        return 0
    names = list(args.names)
    if args.configured:
        from secretary.doctor import configured_models

        names += [name for name in configured_models(settings, _service_names(args.only))
                  if name not in names]
    if not names:
        print("secretary: name the models to pull, or --configured", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        try:
            path = store.pull(name)
        except SecretaryError as exc:
            print(f"{name}: {exc.message}", file=sys.stderr)
            status = 2
            continue
        from secretary.models import disk_size

        print(f"{name}: {path} ({_size(disk_size(path))})")
    if args.to and status == 0:
        print(f"filled {cache_dir}: copy it to the machine without internet and set "
              f"SECRETARY_CACHE_DIR to it there")
    return status


def _service_names(only: str | None) -> list[str]:
    from secretary.launcher import select_services

    return [spec.name for spec in select_services(only)]


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from secretary import doctor

    checks = doctor.run(settings, _service_names(args.only))
    print(doctor.render(checks))
    return 1 if any(check.status == "fail" for check in checks) else 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when every named service on this machine answers /health with status ok
    (the Compose health check)."""
    import httpx

    status = 0
    for name in _service_names(args.services):
        group = getattr(settings, name)
        tls = name == "ui" and settings.ui.tls
        url = f"{'https' if tls else 'http'}://127.0.0.1:{group.port}/health"
        try:
            # The UI's certificate may be self-signed; this only asks whether it is up.
            answer = httpx.get(url, timeout=args.timeout, verify=False)
            state = answer.json().get("status") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            state = f"unreachable ({exc})"
        if state != "ok":
            status = 1
        print(f"{name}: {state or answer.status_code}")
    return status


def _mcp(args: argparse.Namespace, settings: Settings) -> int:
    """The skills as an MCP server on stdin and stdout (stdout is the protocol: every log
    line goes to stderr)."""
    from secretary.mcp.server import serve_stdio
    from secretary.skills.phrases import LANGUAGES

    if args.language not in LANGUAGES:
        print(f"secretary: the skills speak {', '.join(LANGUAGES)}, not {args.language!r}",
              file=sys.stderr)
        return 2
    asyncio.run(serve_stdio(settings, args.language))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secretary", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the services (all of them by default)")
    serve.add_argument("--only", help="comma-separated service names, e.g. stt,tts")
    serve.add_argument("--host", help="address to listen on (default SECRETARY_HOST)")
    serve.add_argument("--single-process", action="store_true",
                       help="run every service in this process (default: one supervised "
                       "process per service, restarted if it crashes)")
    serve.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="deploy the services on Ray Serve instead (secretary[ray]): "
                       "'local' starts Ray here for the command, 'auto' joins this "
                       "machine's cluster, or a cluster's address (default "
                       "SECRETARY_RAY_ADDRESS)")
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

    doctor = sub.add_parser("doctor", help="check this machine for what the configured "
                            "services need; exit status 1 when something cannot run")
    doctor.add_argument("--only", help="check for these services (default: what `serve` "
                        "starts)")
    doctor.set_defaults(handler=_doctor)

    health = sub.add_parser("health", help="ask running services on this machine for their "
                            "/health (exit status 1 unless all are ok)")
    health.add_argument("services", help="comma-separated service names")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_health)

    mcp = sub.add_parser(
        "mcp", help="serve the secretary's skills (calendar, to-dos, reminders, notes, "
        "memory) as an MCP server over stdin and stdout, for Claude Desktop and other "
        "agents")
    mcp.add_argument("--language", default="en",
                     help="language of the answers (en or de; default en)")
    mcp.set_defaults(handler=_mcp)

    models = sub.add_parser("models", help="list or fetch models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="known models, whether they are here, and "
                                    "how much disk they take")
    listing.add_argument("--to", help="list this cache folder instead of SECRETARY_CACHE_DIR")
    pull = models_sub.add_parser(
        "pull", help="fetch models into the cache (Whisper names, canary-1b, xtts, Piper "
        "voice names, face-landmarker; see `models list`)")
    pull.add_argument("names", nargs="*")
    pull.add_argument("--configured", action="store_true",
                      help="also every model the configured services use")
    pull.add_argument("--only", help="with --configured: these services (default: what "
                      "`serve` starts)")
    pull.add_argument("--to", help="fill this cache folder instead of SECRETARY_CACHE_DIR, "
                      "to carry it to a machine without internet")
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
