#!/usr/bin/env bash
# The test command behind `make test`: runs the stages named on the command line (default: all)
# and fails when any stage fails or a stage that has tests runs none of them.
#
#   sanity       ansible-test sanity on a copy at .build/sanity/ansible_collections/neuralinternet/compute
#   units        pytest tests/unit (offline)
#   localnet     pytest tests/localnet (root: it runs sshd on loopback)
#   integration  ansible-test integration targets against `python -m localnet up`
#   molecule     molecule scenarios in extensions/molecule/ against the same localnet
#
# Expects hack/setup.sh to have run (make does that). SANITY_ARGS adds ansible-test sanity
# options (e.g. "--test pep8"); LOCALNET_ARGS replaces `--miners 8` for `localnet up`;
# INTEGRATION_TARGETS runs only the named integration targets;
# PYTEST_TIMEOUT is the per-test limit in seconds. Several runs can share the machine: each takes
# its own TEST_RUN_DIR (default .build; the sanity copy and logs) and LOCALNET_STATE_DIR (default
# .localnet), with LOCALNET_ARGS naming its own --ip-prefix and --user-prefix.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

VENV="${VENV:-.venv}"
export PATH="$ROOT/$VENV/bin:$PATH"
PY="$ROOT/$VENV/bin/python"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
RUN_DIR="${TEST_RUN_DIR:-.build}"
LOCALNET_DIR="${LOCALNET_STATE_DIR:-.localnet}"
COPY="$RUN_DIR/sanity/ansible_collections/neuralinternet/compute"
LOGS="$RUN_DIR/logs"
PYTEST_TIMEOUT="${PYTEST_TIMEOUT:-300}"
mkdir -p "$LOGS"

SUMMARY=()
FAILED=0
LOCALNET_UP=0

say() { printf '\n=== %s\n' "$*"; }
record() {  # stage, status (passed|failed|skipped), detail
    SUMMARY+=("$(printf '%-12s %-8s %s' "$1" "$2" "$3")")
    [ "$2" = failed ] && FAILED=1
    return 0
}

# The last "N passed, M skipped in 1.2s" line of a pytest log.
pytest_counts() { grep -E '^=* ?[0-9]+ (passed|failed|error|skipped|deselected|xfailed|xpassed|warnings?)|no tests ran' "$1" | tail -n1 | sed 's/=//g; s/^ *//; s/ *$//'; }

# The index mirrors in /etc/xdg/pip list local paths that do not exist; pip warns per package.
quiet_pip() { grep --line-buffered -v "is ignored: it is neither a file nor a directory"; }

has_tests() { [ -d "$1" ] && [ -n "$(find "$1" -name 'test_*.py' -print -quit)" ]; }

run_pytest() {  # stage, directory, pytest options
    local stage="$1" dir="$2" log="$LOGS/$1.log" rc
    shift 2
    say "$stage: pytest $dir $*"
    PYTHONPATH="$ROOT/.build${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest "$dir" "$@" \
        -p no:cacheprovider -q -ra --timeout="$PYTEST_TIMEOUT" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) record "$stage" passed "$(pytest_counts "$log")" ;;
        5) record "$stage" failed "no tests ran" ;;
        *) record "$stage" failed "$(pytest_counts "$log") (pytest exit $rc)" ;;
    esac
}

sync_copy() {
    # ansible-test works out the collection from the real path of the working directory, so
    # it needs a copy under ansible_collections/, not the .build symlink. Git-ignored files stay out.
    # Its own (empty) git repository stops ansible-test from finding this checkout's .git above
    # it, where .build/ is ignored; untracked files count, so every copied file is tested.
    mkdir -p "$COPY"
    [ -d "$COPY/.git" ] || git init -q "$COPY"
    rsync -a --delete --exclude=/.git --exclude=/tests/output --filter=':- .gitignore' ./ "$COPY/"
}

stage_sanity() {
    local log="$LOGS/sanity.log" rc total failed skipped extra
    read -ra extra <<< "${SANITY_ARGS:-}"  # e.g. SANITY_ARGS="--test pep8"
    say "sanity: ansible-test sanity --local --python $PYVER ${extra[*]}"
    sync_copy
    (cd "$COPY" && ansible-test sanity --local --python "$PYVER" --color no "${extra[@]}") 2>&1 | quiet_pip | tee "$log"
    rc=${PIPESTATUS[0]}
    total="$(grep -c '^Running sanity test "' "$log")"
    skipped="$(grep -c 'Skipping sanity test "' "$log")"
    failed="$(sed -n 's/^[A-Z]*: The \([0-9]*\) sanity test(s) listed below .*/\1/p' "$log")"
    if [ "$rc" -eq 0 ] && [ "$total" -gt 0 ]; then
        record sanity passed "$total tests ran, $skipped skipped"
    else
        record sanity failed "$total tests ran, ${failed:-?} failed, $skipped skipped (exit $rc)"
    fi
}

stage_units() {
    # importlib: test files in different folders may share a name (modules/, module_utils/).
    run_pytest units tests/unit --import-mode=importlib
}

stage_localnet() {
    if ! has_tests tests/localnet; then
        record localnet skipped "no tests/localnet/test_*.py yet"
        return
    fi
    # pytest's default import mode: these tests import helpers from their conftest.py.
    run_pytest localnet tests/localnet
}

integration_targets() {
    local t
    for t in tests/integration/targets/*/; do
        [ -d "$t" ] && basename "$t"
    done
}

molecule_scenarios() {
    local m
    for m in extensions/molecule/*/molecule.yml; do
        [ -f "$m" ] && basename "$(dirname "$m")"
    done
}

localnet_down() {
    [ "$LOCALNET_UP" -eq 1 ] || return 0
    say "localnet down"
    "$PY" -m localnet down --state-dir "$LOCALNET_DIR" || true
    LOCALNET_UP=0
}

localnet_up() {
    local args
    [ "$LOCALNET_UP" -eq 1 ] && return 0
    say "localnet up"
    trap localnet_down EXIT
    LOCALNET_UP=1
    read -ra args <<< "${LOCALNET_ARGS:---miners 8}"
    "$PY" -m localnet up "${args[@]}" --state-dir "$LOCALNET_DIR" || return 1
    set -a
    # shellcheck disable=SC1091
    . "$LOCALNET_DIR/env"
    set +a
}

write_integration_config() {
    # ansible-test passes only a fixed list of environment variables to targets, so the localnet
    # environment reaches them as variables: each NAME=value in the localnet's env becomes `name`
    # (lower case), and `nicompute_env` holds them all for an `environment:` keyword.
    # NICOMPUTE_LOCALNET_CTL (`nicompute_localnet_ctl`) lets a target drive localnet's faults.
    "$PY" - "$LOCALNET_DIR/env" "$COPY/tests/integration/integration_config.yml" <<'PY'
import os, re, sys, json
names = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
    if m and m.group(1) in os.environ:
        names.append(m.group(1))
env = {n: os.environ[n] for n in names}
config = {n.lower(): v for n, v in env.items()}
config["nicompute_env"] = env
with open(sys.argv[2], "w") as out:
    json.dump(config, out, indent=2, sort_keys=True)  # JSON is YAML
PY
}

stage_integration() {
    local targets log="$LOGS/integration.log" rc
    targets="$(integration_targets | tr '\n' ' ')"
    if [ -z "$targets" ]; then
        record integration skipped "no targets in tests/integration/targets/"
        return
    fi
    if [ ! -f localnet/__main__.py ]; then
        record integration skipped "targets ($targets) need localnet/__main__.py, which does not exist yet"
        return
    fi
    localnet_up || { record integration failed "localnet up failed"; return; }
    sync_copy
    write_integration_config
    say "integration: ansible-test integration --local ($targets)"
    # shellcheck disable=SC2086  # INTEGRATION_TARGETS: space-separated target names (default: all)
    (cd "$COPY" && ansible-test integration --local --python "$PYVER" --color no ${INTEGRATION_TARGETS:-}) 2>&1 | quiet_pip | tee "$log"
    rc=${PIPESTATUS[0]}
    local ran
    ran="$(grep -cE '^Running .* integration test (role|script)$' "$log")"
    if [ "$rc" -eq 0 ] && [ "$ran" -gt 0 ]; then
        record integration passed "$ran targets"
    else
        record integration failed "$ran targets ran (exit $rc)"
    fi
}

stage_molecule() {
    local scenarios log="$LOGS/molecule.log" rc
    scenarios="$(molecule_scenarios | tr '\n' ' ')"
    if [ -z "$scenarios" ]; then
        record molecule skipped "no scenarios in extensions/molecule/"
        return
    fi
    if [ -f localnet/__main__.py ]; then
        localnet_up || { record molecule failed "localnet up failed"; return; }
    fi
    say "molecule: test --all ($scenarios)"
    ANSIBLE_COLLECTIONS_PATH="$ROOT/.build" molecule test --all 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        record molecule passed "scenarios: $scenarios"
    else
        record molecule failed "scenarios: $scenarios (exit $rc)"
    fi
}

STAGES=("$@")
[ "${#STAGES[@]}" -eq 0 ] && STAGES=(sanity units localnet integration molecule)
for stage in "${STAGES[@]}"; do
    start=$SECONDS
    case "$stage" in
        sanity) stage_sanity ;;
        units) stage_units ;;
        localnet) stage_localnet ;;
        integration) stage_integration ;;
        molecule) stage_molecule ;;
        *) echo "unknown stage: $stage" >&2; exit 2 ;;
    esac
    SUMMARY[-1]+=" [$((SECONDS - start))s]"
done
localnet_down

say "summary"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
