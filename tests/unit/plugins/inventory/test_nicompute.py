# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The inventory plugin, run by the real ansible-inventory and ansible commands on a *.nicompute.yml
# file over a real SQLite database: host names, variables, which states become hosts, constructed
# groups, the cache, and values from miners that must never be templated. No miner is contacted
# (live_only is covered by the integration target on localnet). Ansible finds the plugin through
# ANSIBLE_COLLECTIONS_PATH, as a user's does, so it runs in its own process.

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.doc_fragments.nicompute import ModuleDocFragment
from ansible_collections.neuralinternet.compute.plugins.module_utils._inventory import (
    allocation_entries,
    host_name,
    private_key_for,
    public_key_files,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import ENV_FALLBACKS
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    BUILD_DIR,
    CREDENTIALS,
    REGKEY,
    file_state,
    specs,
    upstream_database,
)

HK_H100 = "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX"
HK_4090 = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"
HK_CLI = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"
HK_PENDING = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"
HK_RELEASING = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
HK_EXPIRED = "5Ck5SLSHYac6WFt5UZRSsdJjwmpSZq85fd5TRNAdZQVzEAPT"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl team@laptop"
INJECTED = "{{ lookup('pipe', 'touch %s') }}"

BIN = os.path.dirname(sys.executable)


def _activate(store, name, hotkey, uid, ssh_key="", timeline=30):
    store.claim(name, hotkey, uid, "127.0.0.%d" % (10 + uid), REGKEY + hotkey, ssh_key, "gpu", timeline,
                Owner.current(), 60)
    store.activate(hotkey, REGKEY + hotkey, CREDENTIALS)


@pytest.fixture
def world(tmp_path):
    marker = tmp_path / "pwned"
    db = upstream_database(tmp_path / "database.db", miner_details=[
        (HK_H100, specs("NVIDIA H100 80GB HBM3", 81559, 8)),
        (HK_4090, specs(INJECTED % marker, 24564, 1)),
    ], allocations=[(HK_CLI, dict(CREDENTIALS, ip="203.0.113.9", resource="nvidia h200", regkey="k",
                                  ssh_key="", uuid="u"))])
    with AllocationStore(db) as store:
        _activate(store, "train box", HK_H100, 1, ssh_key=SSH_KEY)
        _activate(store, "render", HK_4090, 2)
        store.claim("in-flight", HK_PENDING, 3, "127.0.0.13", REGKEY + "p", "", "gpu", 1, Owner.current(), 60)
        _activate(store, "going", HK_RELEASING, 4)
        store.mark_releasing(HK_RELEASING, REGKEY + HK_RELEASING, "test")
        _activate(store, "old", HK_EXPIRED, 5, timeline=1)
        store.expire(now=time.time() + 2 * 86400)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "id_team").write_text("private\n")
    (keys / "id_team.pub").write_text(SSH_KEY.replace("team@laptop", "other comment") + "\n")
    (keys / "id_other").write_text("private\n")
    (keys / "id_other.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBB other\n")
    return {"db": db, "dir": tmp_path, "marker": marker, "keys": [str(keys / "id_other"), str(keys / "id_team")]}


def source_file(world, **options):
    config = dict(plugin="neuralinternet.compute.nicompute", db_path=world["db"], private_key_files=world["keys"])
    config.update(options)
    source = world["dir"] / "test.nicompute.yml"
    source.write_text(json.dumps(config))
    return str(source)


def ansible(world, command, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=BUILD_DIR, ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
               ANSIBLE_LOCAL_TEMP=str(world["dir"] / "tmp"), ANSIBLE_HOME=str(world["dir"] / "home"))
    env.pop("NICOMPUTE_DB_PATH", None)
    return subprocess.run([os.path.join(BIN, command)] + list(args), capture_output=True, text=True, env=env,
                          cwd=str(world["dir"]), timeout=120, check=False)


def unwrapped(item):
    # ansible-inventory writes a value marked unsafe as {"__ansible_unsafe": value}.
    return item["__ansible_unsafe"] if list(item) == ["__ansible_unsafe"] else item


def inventory(world, **options):
    """ansible-inventory --list of a source with these options: {"hosts": {name: vars}, "groups": {name: [hosts]}}."""
    completed = ansible(world, "ansible-inventory", "-i", source_file(world, **options), "--list", "--export")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout, object_hook=unwrapped)
    groups = dict((name, sorted(body.get("hosts", []))) for name, body in document.items() if name != "_meta")
    return {"hosts": document["_meta"]["hostvars"], "groups": groups}


def test_active_and_unconfirmed_allocations_are_hosts_named_after_the_allocation(world):
    listed = inventory(world)
    names = sorted(listed["hosts"])
    assert names == ["nicompute-5HGjWA-UMaw", "render", "train_box"]
    assert listed["groups"]["nicompute"] == names


def test_host_variables_connect_and_describe_the_box(world):
    variables = inventory(world)["hosts"]["train_box"]
    assert (variables["ansible_host"], variables["ansible_port"], variables["ansible_user"]) == ("127.0.0.11", 4444, "root")
    assert variables["nicompute_hotkey"] == HK_H100 and variables["nicompute_uid"] == 1
    assert (variables["nicompute_gpu_name"], variables["nicompute_gpu_count"], variables["nicompute_gpu_memory_gb"]) == (
        "NVIDIA H100 80GB HBM3", 8, 80)
    assert variables["nicompute_state"] == "active" and variables["nicompute_name"] == "train box"
    assert variables["nicompute_expires_at"] > time.time() + 86400
    # The private key whose .pub is the allocation's key (comments may differ), not the other one.
    assert variables["ansible_ssh_private_key_file"] == world["keys"][1]
    assert "ansible_password" not in variables and "nicompute_status" not in variables


def test_no_key_file_is_named_when_none_matches_and_the_password_only_when_asked(world):
    plain = inventory(world)["hosts"]["render"]
    assert "ansible_ssh_private_key_file" not in plain and "ansible_password" not in plain
    with_password = inventory(world, use_password=True)["hosts"]["render"]
    assert with_password["ansible_password"] == CREDENTIALS["password"]


def test_an_upstream_cli_allocation_has_a_short_hotkey_name_and_its_address(world):
    variables = inventory(world)["hosts"]["nicompute-5HGjWA-UMaw"]
    assert variables["ansible_host"] == "203.0.113.9" and variables["nicompute_name"] is None
    assert variables["nicompute_gpu_name"] is None  # no specs row for this miner


def test_values_from_miners_are_never_templated(world):
    options = dict(compose={"gpu_label": "nicompute_gpu_name"},
                   keyed_groups=[{"key": "nicompute_gpu_count | string", "prefix": "gpus"}])
    listed = inventory(world, **options)
    assert listed["hosts"]["render"]["nicompute_gpu_name"] == INJECTED % world["marker"]
    assert listed["hosts"]["render"]["gpu_label"] == INJECTED % world["marker"]
    # Used the way a play uses it: the text comes back as text, and the lookup never runs.
    completed = ansible(world, "ansible", "-i", source_file(world, **options), "render", "-c", "local",
                        "-m", "ansible.builtin.debug", "-a", "msg={{ nicompute_gpu_name }}|{{ gpu_label }}")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (INJECTED % world["marker"]) + "|" + (INJECTED % world["marker"]) in completed.stdout
    assert not os.path.exists(str(world["marker"]))


def test_constructed_groups_and_composed_variables(world):
    listed = inventory(world, keyed_groups=[{"key": "nicompute_gpu_count | string", "prefix": "gpus"}],
                       groups={"big": "nicompute_gpu_count | default(0, true) >= 8"},
                       compose={"total_gb": "nicompute_gpu_count * nicompute_gpu_memory_gb"})
    assert listed["groups"]["big"] == ["train_box"] and listed["groups"]["gpus_8"] == ["train_box"]
    assert listed["groups"]["gpus_1"] == ["render"]
    assert listed["hosts"]["train_box"]["total_gb"] == 640


def test_the_raw_list_is_cached_not_the_groups(world):
    cache_dir = str(world["dir"] / "cache")
    options = dict(cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=cache_dir, cache_timeout=600)
    first = inventory(world, **options)
    assert "render" in first["hosts"]
    cached = os.listdir(cache_dir)
    assert len(cached) == 1
    with open(os.path.join(cache_dir, cached[0])) as handle:
        document = json.load(handle)
    # ansible-core 2.19 keeps the value as JSON text under "__payload__"; older versions as is.
    entries = json.loads(document["__payload__"]) if "__payload__" in document else document
    assert sorted(entry["hotkey"] for entry in entries) == sorted([HK_H100, HK_4090, HK_CLI])
    assert all(entry["password"] is None for entry in entries)  # no secret in the cache
    # A second parse reads the cache: a database moved away does not matter, the groups are rebuilt.
    os.rename(world["db"], world["db"] + ".away")
    second = inventory(world, keyed_groups=[{"key": "nicompute_gpu_count | string", "prefix": "gpus"}], **options)
    assert second["groups"]["gpus_8"] == ["train_box"]


def test_reading_changes_nothing_and_errors_name_the_source(world, tmp_path):
    before = file_state(world["db"])
    inventory(world)
    assert file_state(world["db"]) == before
    completed = ansible(world, "ansible-inventory", "-i", source_file(world, db_path=str(tmp_path / "nope.db")), "--list")
    assert completed.returncode != 0
    assert "nope.db does not exist" in completed.stderr


def test_a_misspelled_option_is_an_error_not_a_silent_default(world):
    completed = ansible(world, "ansible-inventory", "-i", source_file(world, live_onyl=True), "--list")
    assert completed.returncode != 0
    assert "unknown options live_onyl" in completed.stderr


def test_only_nicompute_files_are_sources(world, tmp_path):
    source = tmp_path / "hosts.yml"
    source.write_text(json.dumps({"plugin": "neuralinternet.compute.nicompute", "db_path": world["db"]}))
    completed = ansible(world, "ansible-inventory", "-i", str(source), "--list")
    assert completed.returncode != 0 and "render" not in completed.stdout


def test_entries_hold_no_password_unless_asked(world):
    assert all(entry["password"] is None for entry in allocation_entries(world["db"]))
    assert {entry["password"] for entry in allocation_entries(world["db"], with_password=True)} == {"a1b2c3d4e5"}


@pytest.mark.parametrize("name, expected", [("box-1.a", "box-1.a"), ("my box/2", "my_box_2"), ("Ünï", "_n_")])
def test_host_names_keep_safe_characters(name, expected):
    assert host_name({"name": name, "hotkey": HK_H100}) == expected


def test_private_key_for_compares_type_and_body_only(world):
    key_files = public_key_files(world["keys"] + [str(world["dir"] / "missing")])
    assert [path for path, _body in key_files] == world["keys"]
    assert private_key_for(SSH_KEY, key_files) == world["keys"][1]
    assert private_key_for("not a key", key_files) is None
    assert private_key_for("", key_files) is None
    assert private_key_for(SSH_KEY, public_key_files([str(world["dir"] / "missing")])) is None


def test_the_plugin_environment_fragment_matches_the_modules_fallbacks():
    import yaml

    options = yaml.safe_load(ModuleDocFragment.PLUGIN_ENV)["options"]
    assert dict((name, tuple(item["name"] for item in option["env"])) for name, option in options.items()) == ENV_FALLBACKS
