# Sourced by start.sh and test.sh: the virtual environment (.venv, or SECRETARY_VENV) is
# created once and the project installed into it from its own files, with the extras
# given as the first argument (for example "[test,xtts]"). Sets VENV.
setup_venv() {
    VENV=${SECRETARY_VENV:-.venv}
    if [ ! -x "$VENV/bin/python" ]; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".${1:-}"
}
