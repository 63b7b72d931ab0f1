#!/usr/bin/env bash
# The second leg: Python 3.12, where pip picks ansible-core 2.21 — sanity and unit tests in
# their own virtual environment (.venv-3.12). PY312 names the interpreter; otherwise the first
# Python 3.12 found on PATH or under pyenv is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

is_312() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }

find_312() {
    local candidate
    for candidate in "${PY312:-}" python3.12 /usr/bin/python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
        [ -n "$candidate" ] && is_312 "$candidate" && { command -v "$candidate"; return 0; }
    done
    return 1
}

if ! PY="$(find_312)"; then
    echo "python 3.12 leg: no Python 3.12 found (set PY312=/path/to/python3.12)" >&2
    exit 1
fi
echo "=== python 3.12 leg with $PY"
PYTHON="$PY" VENV=.venv-3.12 hack/setup.sh
PYTHON="$PY" VENV=.venv-3.12 hack/test.sh sanity units
