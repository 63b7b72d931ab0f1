#!/usr/bin/env bash
# Everything `make test` and `make demo` need on a fresh Debian 12 machine: system packages
# (when root), the virtual environment, the collection at ansible_collections/neuralinternet/compute
# and ansible-test's offline pip bootstrap. Cheap to re-run: each step checks before it acts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"
REQUIREMENTS=(requirements.txt tests/requirements.txt)

log() { printf '[setup] %s\n' "$*"; }

system_packages() {
    # command -> Debian package: the localnet tests run sshd on loopback, Ansible needs ssh and
    # sshpass, localnet's box users get passwordless sudo (the gpu_box role's become), hack/test.sh
    # copies with rsync, and ansible-test sanity runs shellcheck.
    local -A wanted=([ssh]=openssh-client [sshd]=openssh-server [sshpass]=sshpass [sudo]=sudo [rsync]=rsync [shellcheck]=shellcheck)
    local missing=() cmd
    for cmd in "${!wanted[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${wanted[$cmd]}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: install these yourself if a test needs them: ${missing[*]}"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

virtualenv() {
    local stamp="$VENV/.requirements.sha256" want
    want="$( { "$PYTHON" --version; cat "${REQUIREMENTS[@]}"; } | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ] || ! cmp -s <("$PYTHON" --version) <("$VENV/bin/python" --version); then
        log "creating $VENV with $("$PYTHON" --version)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    log "pip install -r ${REQUIREMENTS[*]}"
    local args=() req
    for req in "${REQUIREMENTS[@]}"; do args+=(-r "$req"); done
    # The index mirrors in /etc/xdg/pip list missing local paths; pip warns once per package.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    echo "$want" > "$stamp"
}

collection_link() {
    # Playbooks and pytest import the live checkout through this link; ansible-test gets a copy
    # (hack/test.sh) because it resolves the real path and needs it under ansible_collections/.
    mkdir -p .build/ansible_collections/neuralinternet
    ln -sfn ../../.. .build/ansible_collections/neuralinternet/compute
}

ansible_test_bootstrap() {
    # ansible-test wants ~/.ansible/test/cache/get_pip_<pip version>.py; see hack/get_pip_offline.py.
    local version target
    version="$("$VENV/bin/python" - <<'PY'
import pathlib, re, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1).replace(".", "_"))
PY
)"
    target="$HOME/.ansible/test/cache/get_pip_${version}.py"
    if [ ! -f "$target" ] || grep -q 'neuralinternet.compute stand-in' "$target"; then
        mkdir -p "$(dirname "$target")"
        cmp -s hack/get_pip_offline.py "$target" || cp hack/get_pip_offline.py "$target"
    fi
}

system_packages
virtualenv
collection_link
ansible_test_bootstrap
