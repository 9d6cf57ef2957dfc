#!/usr/bin/env bash
# Set up a virtual environment from the project's files, then lint and run every test.
# Extra arguments go to pytest (for example: -k stt, or tests/test_audio.py).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
setup_venv '[test,xtts,liveportrait]'

# The UI tests drive the system's Chromium (Debian's package; Playwright's own browser
# download is not used). Under CI a missing browser fails those tests instead of skipping.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium is not installed; the browser tests will be skipped" >&2
    fi
fi

"$VENV/bin/ruff" check src tests bench scripts
exec "$VENV/bin/python" -m pytest "$@"
