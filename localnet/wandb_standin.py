"""A stand-in for the hosted W&B service, on loopback: ``python -m localnet.wandb_standin STATE_DIR``.

The real wandb SDK (0.31) reaches it through ``WANDB_BASE_URL`` (or ``wandb.Api(overrides=
{"base_url": ...})``) and an API key. It serves the GraphQL subset that the SDK's *public API*
sends for these calls, and nothing more (anything else is answered 400 and logged):

| call | operations (``POST /graphql``, by ``operationName``) |
|---|---|
| ``wandb.Api(api_key=...)`` | ``Viewer`` (the SDK checks the key) |
| ``api.default_entity`` / ``api.create_run()`` without entity | ``GetDefaultEntity`` |
| ``api.runs(path, filters, order, per_page, lazy)``; ``len()``, iteration, pages | ``Runs`` |
| ``api.run("entity/project/run_id")``; ``run.config`` of a lazy run | ``Run`` |
| ``api.create_run(entity=, project=, run_id=)`` | ``UpsertBucket`` (by name, creates project and run) |
| ``run.update()`` | ``UpsertBucket`` (by id: display name, config, ...), then ``UpsertBucket`` (summary) |
| ``run.delete()`` | ``DeleteRun`` |

Filters are the Mongo-style ones upstream SN27 code uses: ``$and``, ``$or``, equality
(``$eq``/``$ne``/``$in``/``$nin``) and ``$exists`` on ``config.KEY[.SUB...]`` (the value W&B
stores as ``{"value": v}``), ``summary_metrics.KEY``, ``display_name``, ``name``, ``state``.
Every request needs HTTP basic auth ``api:KEY`` with the key in STATE/wandb/api_key; a wrong or
missing key gets HTTP 401 ``user is not logged in``, as the hosted service answers.

Runs live in STATE/wandb/runs.json (rewritten atomically after every change); every request is
logged to STATE/wandb/requests.log as one JSON line (operation, entity/project, run, HTTP
status; never the key). Loopback only. SIGTERM ends it.
"""

import base64
import hmac
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localnet.layout import Layout, read_json, write_file, write_json

API_KEY_FILE = "api_key"
RUNS_FILE = "runs.json"
REQUESTS_LOG = "requests.log"
STANDIN_LOG = "standin.log"
# Who the key belongs to, as `viewer` answers.
VIEWER = "localnet"
RUN_ID_ALPHABET = string.ascii_lowercase + string.digits
READY_TIMEOUT_S = 10.0
MAX_BODY = 8 << 20


class StandinError(Exception):
    pass


# ---------------------------------------------------------------- state shared with `up` and the seeding

def new_api_key():
    """40 hex characters: what wandb 0.31 accepts for any host (40+ of [A-Za-z0-9_], optional "prefix-")."""
    return secrets.token_hex(20)


def ensure_api_key(layout):
    """The localnet's W&B API key, made on the first `up` and kept (0600)."""
    path = layout.wandb_path(API_KEY_FILE)
    try:
        with open(path) as handle:
            key = handle.read().strip()
        if len(key) >= 40:
            return key
    except FileNotFoundError:
        pass
    key = new_api_key()
    write_file(path, key + "\n", mode=0o600)
    return key


def read_api_key(layout):
    with open(layout.wandb_path(API_KEY_FILE)) as handle:
        return handle.read().strip()


def new_run_id():
    """Eight lower-case letters and digits, as W&B makes run ids."""
    return "".join(secrets.choice(RUN_ID_ALPHABET) for _position in range(8))


def storage_id(entity, project, name):
    """The run's internal id (`Run.storage_id`), shaped as W&B's: base64 of Run:v1:NAME:PROJECT:ENTITY."""
    return base64.b64encode(("Run:v1:%s:%s:%s" % (name, project, entity)).encode("utf-8")).decode("ascii")


def _now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def new_run(entity, project, name, display_name=None, config=None, state="running"):
    """A stored run; config values are given plain and stored wrapped, {"key": {"value": v, "desc": None}}."""
    now = _now_iso()
    return {
        "id": storage_id(entity, project, name), "entity": entity, "project": project, "name": name,
        "displayName": display_name or name, "state": state,
        "config": dict((key, {"value": value, "desc": None}) for key, value in (config or {}).items()),
        "summaryMetrics": {}, "tags": [], "description": None, "notes": None, "group": None, "jobType": None,
        "createdAt": now, "heartbeatAt": now, "created": time.time(),
    }


def write_runs(layout, runs, projects=None):
    """Replace the stored runs (the seeding at `up`)."""
    projects = sorted(set([tuple(p) for p in projects or []] + [(run["entity"], run["project"]) for run in runs]))
    write_json(layout.wandb_path(RUNS_FILE), {"projects": [list(p) for p in projects], "runs": runs})


def read_runs(layout):
    return (read_json(layout.wandb_path(RUNS_FILE)) or {"runs": []})["runs"]


# ---------------------------------------------------------------- filters (the Mongo-style subset upstream uses)

class QueryError(Exception):
    pass


_MISSING = object()


def _field(run, path):
    """The value a filter path names in a run, or _MISSING."""
    if path in ("display_name", "displayName"):
        return run.get("displayName")
    if path in ("name", "state", "tags"):
        return run.get(path)
    root, _dot, rest = path.partition(".")
    if root == "config" and rest:
        key, _dot, sub = rest.partition(".")
        if key not in run["config"]:
            return _MISSING
        value = run["config"][key]
        value = value.get("value") if isinstance(value, dict) and "value" in value else value
    elif root in ("summary_metrics", "summaryMetrics") and rest:
        key, _dot, sub = rest.partition(".")
        value = run["summaryMetrics"].get(key, _MISSING)
    else:
        raise QueryError("filter on %r is not served by the localnet W&B stand-in" % path)
    for part in sub.split(".") if sub else []:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _equal(value, wanted):
    if value is _MISSING:
        return wanted is None
    if isinstance(value, list) and not isinstance(wanted, list):
        return wanted in value
    return value == wanted


def _condition(value, condition):
    if not (isinstance(condition, dict) and condition and all(key.startswith("$") for key in condition)):
        return _equal(value, condition)
    for operator, operand in condition.items():
        if operator == "$eq":
            ok = _equal(value, operand)
        elif operator == "$ne":
            ok = not _equal(value, operand)
        elif operator == "$in":
            ok = any(_equal(value, item) for item in operand)
        elif operator == "$nin":
            ok = not any(_equal(value, item) for item in operand)
        elif operator == "$exists":
            ok = (value is not _MISSING) == bool(operand)
        else:
            raise QueryError("filter operator %s is not served by the localnet W&B stand-in" % operator)
        if not ok:
            return False
    return True


def matches(run, filters):
    """True when the run passes the Mongo-style filters; QueryError for what is not served."""
    if not isinstance(filters, dict):
        raise QueryError("filters must be an object")
    for key, condition in filters.items():
        if key == "$and":
            ok = all(matches(run, item) for item in condition)
        elif key == "$or":
            ok = any(matches(run, item) for item in condition)
        elif key.startswith("$"):
            raise QueryError("filter operator %s is not served by the localnet W&B stand-in" % key)
        else:
            ok = _condition(_field(run, key), condition)
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- the service

class Store:
    """Runs and projects, persisted after every change; one lock for all requests."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        document = read_json(path) or {}
        self.runs = document.get("runs", [])
        self.projects = set(tuple(p) for p in document.get("projects", []))

    def save(self):
        write_json(self.path, {"projects": [list(p) for p in sorted(self.projects)], "runs": self.runs})

    def find(self, entity, project, name):
        for run in self.runs:
            if (run["entity"], run["project"], run["name"]) == (entity, project, name):
                return run
        return None

    def by_id(self, ident):
        for run in self.runs:
            if run["id"] == ident:
                return run
        return None


def _project_id(entity, project):
    return str(int.from_bytes(("%s/%s" % (entity, project)).encode("utf-8")[:6], "big"))


def run_node(run, full):
    """The run as the SDK's LightweightRunFragment (full: RunFragment) selects it."""
    node = {
        "projectId": _project_id(run["entity"], run["project"]),
        "id": run["id"], "tags": run["tags"], "name": run["name"], "displayName": run["displayName"],
        "sweepName": None, "state": run["state"], "group": run["group"], "jobType": run["jobType"],
        "commit": None, "readOnly": False, "createdAt": run["createdAt"], "heartbeatAt": run["heartbeatAt"],
        "description": run["description"], "notes": run["notes"], "historyLineCount": 0,
        "user": {"name": VIEWER, "username": VIEWER},
    }
    if full:
        node.update(config=json.dumps(run["config"]), systemMetrics="{}",
                    summaryMetrics=json.dumps(run["summaryMetrics"]), historyKeys={"keys": {}, "lastStep": -1})
    return node


def _full_fragment(query):
    return "fragment RunFragment on Run" in query


def _cursor(index):
    return base64.b64encode(("cursor:%d" % index).encode("ascii")).decode("ascii")


def _offset(cursor):
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode("ascii").split(":", 1)[1]) + 1
    except (ValueError, IndexError, UnicodeDecodeError):
        raise QueryError("bad cursor")


def _ordered(runs, order):
    order = order or "+created_at"
    field = order.lstrip("+-")
    if field not in ("created_at", "createdAt"):
        raise QueryError("order %r is not served by the localnet W&B stand-in" % order)
    return sorted(runs, key=lambda run: run["created"], reverse=order.startswith("-"))


class Service:
    """Answers one GraphQL request: (HTTP status, response document, what to log)."""

    def __init__(self, store):
        self.store = store

    def execute(self, request):
        operation = request.get("operationName") or _operation_name(request.get("query") or "")
        variables = request.get("variables") or {}
        query = request.get("query") or ""
        handler = getattr(self, "op_" + (operation or ""), None)
        log = {"operation": operation}
        if handler is None:
            return 400, {"errors": [{"message": "operation %r is not served by the localnet W&B stand-in"
                                                % operation}]}, log
        try:
            with self.store.lock:
                return 200, {"data": handler(query, variables, log)}, log
        except QueryError as exc:
            return 400, {"errors": [{"message": str(exc)}]}, log
        except NotFound as exc:
            return 200, {"errors": [{"message": str(exc), "path": [exc.path]}], "data": {exc.path: None}}, log

    # ---- who am I

    def op_Viewer(self, _query, _variables, _log):
        return {"viewer": {"id": "VXNlcjox", "entity": VIEWER, "username": VIEWER, "email": None,
                           "flags": "{}", "teams": {"edges": []}}}

    def op_GetDefaultEntity(self, _query, _variables, _log):
        return {"viewer": {"id": "VXNlcjox", "entity": VIEWER}}

    # ---- reading runs

    def _project(self, variables, log):
        entity, project = variables.get("entity"), variables.get("project")
        log.update(entity=entity, project=project)
        return (entity, project) if (entity, project) in self.store.projects else None

    def op_Runs(self, query, variables, log):
        key = self._project(variables, log)
        if key is None:
            return {"project": None}
        filters = variables.get("filters") or "{}"
        filters = json.loads(filters) if isinstance(filters, str) else filters
        log["filters"] = filters
        selected = _ordered([run for run in self.store.runs if (run["entity"], run["project"]) == key
                             and matches(run, filters)], variables.get("order"))
        start = _offset(variables.get("cursor"))
        per_page = int(variables.get("perPage") or 50)
        page = selected[start:start + per_page]
        log["runs"] = [run["name"] for run in page]
        return {"project": {
            "internalId": _project_id(*key), "runCount": len(selected), "readOnly": False,
            "runs": {"edges": [{"node": run_node(run, _full_fragment(query)), "cursor": _cursor(start + index)}
                               for index, run in enumerate(page)],
                     "pageInfo": {"endCursor": _cursor(start + len(page) - 1) if page else None,
                                  "hasNextPage": start + len(page) < len(selected)}}}}

    def op_Run(self, query, variables, log):
        key = self._project(variables, log)
        log["run"] = variables.get("name")
        if key is None:
            return {"project": None}
        run = self.store.find(key[0], key[1], variables.get("name"))
        return {"project": {"run": run_node(run, _full_fragment(query)) if run else None}}

    # ---- changing runs

    def op_UpsertBucket(self, query, variables, log):
        if "name" in variables and not variables.get("id"):
            return self._create(variables, log)
        run = self.store.by_id(variables.get("id"))
        if run is None:
            raise NotFound("run not found", "upsertBucket")
        log.update(entity=run["entity"], project=run["project"], run=run["name"])
        if "summaryMetrics" in variables:
            log["change"] = "summary"
            run["summaryMetrics"] = json.loads(variables.get("summaryMetrics") or "{}")
        else:
            log["change"] = "run"
            if variables.get("config") is not None:
                run["config"] = json.loads(variables["config"])
            for field, variable in (("displayName", "display_name"), ("description", "description"),
                                    ("notes", "notes"), ("tags", "tags"), ("group", "groupName"),
                                    ("jobType", "jobType")):
                if variables.get(variable) is not None:
                    run[field] = variables[variable]
        run["heartbeatAt"] = _now_iso()
        self.store.save()
        if "fragment RunFragment on Run" in query:
            return {"upsertBucket": {"bucket": run_node(run, True)}}
        return {"upsertBucket": {"bucket": {"id": run["id"]}}}

    def _create(self, variables, log):
        entity, project = variables.get("entity") or VIEWER, variables.get("project") or "uncategorized"
        name = variables.get("name")
        log.update(entity=entity, project=project, run=name, change="create")
        if not name:
            raise QueryError("a run needs a name")
        run = self.store.find(entity, project, name)
        inserted = run is None
        if inserted:
            run = new_run(entity, project, name, state=variables.get("state") or "running")
            self.store.runs.append(run)
        elif variables.get("state"):
            run["state"] = variables["state"]
        self.store.projects.add((entity, project))
        self.store.save()
        return {"upsertBucket": {"bucket": {"project": {"name": project, "entity": {"name": entity}},
                                            "id": run["id"], "name": run["name"]},
                                 "inserted": inserted}}

    def op_DeleteRun(self, _query, variables, log):
        run = self.store.by_id(variables.get("id"))
        if run is None:
            raise NotFound("run not found", "deleteRun")
        log.update(entity=run["entity"], project=run["project"], run=run["name"], change="delete")
        self.store.runs.remove(run)
        self.store.save()
        return {"deleteRun": {"clientMutationId": None}}


class NotFound(Exception):
    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


def _operation_name(query):
    found = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return found.group(1) if found else None


# ---------------------------------------------------------------- HTTP

def _key_from(header):
    """The API key in an `Authorization: Basic base64(user:key)` header, or None."""
    kind, _space, value = (header or "").partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").split(":", 1)[1]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "localnet-wandb-standin"

    def _reply(self, status, document):
        body = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _log(self, entry):
        entry = dict(entry, time=round(time.time(), 3), method=self.command, path=self.path)
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.server.log_lock:
            with open(self.server.requests_log, "a") as handle:
                handle.write(line)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._reply(413, {"errors": [{"message": "request too large"}]})
            return
        body = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0] != "/graphql":
            # e.g. wandb-core's telemetry (/sdk/otel/v1/metrics): not part of the API localnet serves.
            self._log({"status": 404})
            self._reply(404, {"errors": [{"message": "not served by the localnet W&B stand-in"}]})
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            self._log({"status": 400})
            self._reply(400, {"errors": [{"message": "the body is not JSON"}]})
            return
        key = _key_from(self.headers.get("Authorization"))
        if key is None or not hmac.compare_digest(key.encode("utf-8"), self.server.api_key.encode("utf-8")):
            operation = request.get("operationName") or _operation_name(request.get("query") or "")
            self._log({"status": 401, "operation": operation})
            self._reply(401, {"errors": [{"message": "user is not logged in",
                                          "extensions": {"code": "PERMISSION_ERROR"}}]})
            return
        status, document, log = self.server.service.execute(request)
        self._log(dict(log, status=status))
        self._reply(status, document)

    def do_GET(self):
        self._log({"status": 404})
        self._reply(404, {"errors": [{"message": "not served by the localnet W&B stand-in"}]})

    do_PUT = do_GET

    def log_message(self, *_args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, layout):
        self.api_key = read_api_key(layout)
        self.service = Service(Store(layout.wandb_path(RUNS_FILE)))
        self.requests_log = layout.wandb_path(REQUESTS_LOG)
        self.log_lock = threading.Lock()
        super().__init__((layout.wandb_ip, layout.wandb_port), Handler)


def main(argv):
    if len(argv) != 2:
        print("usage: python -m localnet.wandb_standin STATE_DIR", file=sys.stderr)
        return 2
    layout, _record = Layout.load(argv[1])
    if layout is None:
        print("no localnet recorded in %s" % argv[1], file=sys.stderr)
        return 2
    if not layout.wandb_ip.startswith("127."):
        print("the W&B stand-in binds loopback only", file=sys.stderr)
        return 2
    server = Server(layout)
    signal.signal(signal.SIGTERM, lambda *_args: os._exit(0))
    print("wandb stand-in %d serving %s" % (os.getpid(), layout.wandb_url), flush=True)
    server.serve_forever()
    return 0


# ---------------------------------------------------------------- driven by `up`, `down` and `localnet wandb`

def spawn(layout):
    """Start the stand-in as its own process (own session, output to STATE/wandb/standin.log); its PID."""
    from localnet import _collection

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_collection.REPO_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    os.makedirs(layout.wandb_path(""), mode=0o700, exist_ok=True)
    with open(layout.wandb_path(STANDIN_LOG), "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "localnet.wandb_standin", layout.state_dir],
                                   cwd=_collection.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def wait_ready(layout, alive, timeout=READY_TIMEOUT_S):
    """Wait until the stand-in accepts connections; StandinError when it dies or does not within timeout."""
    from localnet import probe

    deadline = time.monotonic() + timeout
    while not probe.tcp_open(layout.wandb_ip, layout.wandb_port, timeout=0.2):
        if not alive():
            raise StandinError("the W&B stand-in exited during start-up; see %s" % layout.wandb_path(STANDIN_LOG))
        if time.monotonic() > deadline:
            raise StandinError("the W&B stand-in did not listen on %s within %ds; see %s"
                               % (layout.wandb_url, timeout, layout.wandb_path(STANDIN_LOG)))
        time.sleep(0.05)


def status(layout, record):
    """The stand-in as `localnet status` and `localnet wandb status` show it."""
    from localnet import procs

    ident = record["pids"].get("wandb")
    return {"url": layout.wandb_url, "running": bool(ident) and procs.alive(ident),
            "pid": ident["pid"] if ident else None, "runs": len(read_runs(layout)),
            "requests": _count_lines(layout.wandb_path(REQUESTS_LOG)), "sync_seconds": layout.sync_seconds,
            "foreign_validators": layout.foreign_validators,
            "runs_file": layout.wandb_path(RUNS_FILE), "requests_log": layout.wandb_path(REQUESTS_LOG)}


def status_line(document):
    return "W&B stand-in %s: %s, %d runs, %d requests; miners read it %s" % (
        document["url"], "running" if document["running"] else "STOPPED", document["runs"], document["requests"],
        "every %gs" % document["sync_seconds"] if document["sync_seconds"] else "never (--sync-seconds 0)")


def control(layout, record, action):
    """`localnet wandb stop|start|status`; stop and start update the run record. Returns status()."""
    from localnet import procs

    ident = record["pids"].get("wandb")
    running = bool(ident) and procs.alive(ident)
    if action == "stop" and running:
        left = procs.stop([ident])
        if left:
            raise StandinError("could not stop the W&B stand-in (PID %d)" % ident["pid"])
        record["pids"]["wandb"] = None
        write_json(layout.record_file, record)
    elif action == "start" and not running:
        from localnet import probe

        if probe.tcp_open(layout.wandb_ip, layout.wandb_port, timeout=0.2):
            raise StandinError("%s is already in use" % layout.wandb_url)
        record["pids"]["wandb"] = procs.identity(spawn(layout))
        write_json(layout.record_file, record)
        wait_ready(layout, lambda: procs.alive(record["pids"]["wandb"]))
    return status(layout, record)


def _count_lines(path):
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def requests_logged(layout):
    """The request log as a list of dicts (tests read it)."""
    try:
        with open(layout.wandb_path(REQUESTS_LOG)) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    sys.exit(main(sys.argv))
