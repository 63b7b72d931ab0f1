#!/usr/bin/env bash
# `make demo`: bring up localnet, run playbooks/allocate_and_configure.yml against it, and always
# bring localnet down again. Pieces that do not exist yet are skipped with a note.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
export PATH="$ROOT/$VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build"
PY="$ROOT/$VENV/bin/python"
PLAYBOOK=playbooks/allocate_and_configure.yml

say() { printf '=== %s\n' "$*"; }

localnet_down() {
    say "localnet down"
    "$PY" -m localnet down --state-dir .localnet || true
}

if [ -f localnet/__main__.py ]; then
    trap localnet_down EXIT
    say "localnet up (8 miners)"
    "$PY" -m localnet up --miners 8 --state-dir .localnet
    set -a
    # shellcheck disable=SC1091
    . .localnet/env
    set +a
else
    say "skipped localnet: localnet/__main__.py does not exist yet"
fi

if [ -f "$PLAYBOOK" ]; then
    say "ansible-playbook $PLAYBOOK"
    ansible-playbook "$PLAYBOOK" "$@"
else
    say "skipped playbook: $PLAYBOOK does not exist yet"
fi
