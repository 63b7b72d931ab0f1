# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: nicompute
short_description: Hosts from this validator's NI Compute (SN27) allocations
version_added: 0.1.0
description:
  - Turns the allocations in the validator database into inventory hosts, so boxes allocated in
    earlier runs can be found and configured (C(add_host) lasts one run).
  - One host per allocation that can be logged into - state C(active) or C(unconfirmed); pending,
    releasing and expired allocations are never hosts. Allocations made by the upstream
    Registration CLI are included.
  - The host name is the allocation's name (characters other than letters, digits, C(_), C(.) and
    C(-) become C(_)); an upstream CLI allocation, which has no name, is C(nicompute-<first 6>-<last 4>)
    of its miner's hotkey.
  - "Host variables: C(ansible_host), C(ansible_port), C(ansible_user); C(ansible_ssh_private_key_file)
    when one of O(private_key_files) is the private half of the key the allocation was made with;
    C(ansible_password) only with O(use_password=true); and C(nicompute_name), C(nicompute_hotkey),
    C(nicompute_uid), C(nicompute_resource), C(nicompute_gpu_name), C(nicompute_gpu_count),
    C(nicompute_gpu_memory_gb), C(nicompute_state), C(nicompute_created_at), C(nicompute_expires_at)
    (and C(nicompute_status) with O(live_only))."
  - Every value that comes from a miner or the database is marked unsafe, so text such as a GPU name
    C({{ lookup('pipe', 'id') }}) is never templated.
  - Every host is in the group O(group); O(compose), O(groups) and O(keyed_groups) build more (for
    example one group per GPU name).
  - With O(cache), the raw allocation list is cached, not the groups built from it.
  - Reads the database only; nothing is written. Loads bittensor and the wallet only with O(live_only).
  - The inventory source must be a file whose name ends in C(.nicompute.yml) or C(.nicompute.yaml). A key
    in it that is not an option of this plugin is an error, not a silently ignored typo.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.plugin_env
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; it marks the file as its source.
    required: true
    choices: [neuralinternet.compute.nicompute]
    type: str
  group:
    description: The group every allocation host belongs to.
    type: str
    default: nicompute
  live_only:
    description:
      - Ask every miner at once (each within O(check_timeout)) whether it still holds the allocation's key,
        and keep only the hosts whose miner says so. A miner's "not held" proves little about the
        allocation, which stays recorded and published; it only leaves this host list.
      - Needs the wallet, whose hotkey signs the requests, and bittensor.
    type: bool
    default: false
  check_timeout:
    description: Seconds each miner has to answer with O(live_only). Greater than C(0), at most C(600).
    type: float
    default: 5
  use_password:
    description:
      - Set C(ansible_password) from the allocation's login password. The password then lives in the
        inventory (and its cache, with O(cache)); key login needs none.
    type: bool
    default: false
  private_key_files:
    description:
      - Private key files to offer - a host gets C(ansible_ssh_private_key_file) set to the first one whose
        C(.pub) file holds the public key the allocation was made with.
    type: list
    elements: path
    default: [~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa]
"""

EXAMPLES = r"""
# my.nicompute.yml - database and wallet from the NICOMPUTE_* environment
plugin: neuralinternet.compute.nicompute
keyed_groups:
  - key: nicompute_gpu_name | default('no gpu', true) | lower | regex_replace('[^a-z0-9]+', '_')
    prefix: gpu
compose:
  gpu_memory_total_gb: (nicompute_gpu_count | default(0, true)) * (nicompute_gpu_memory_gb | default(0, true))

# live.nicompute.yml - only boxes whose miner confirms them now; cached for 5 minutes
plugin: neuralinternet.compute.nicompute
db_path: /home/validator/compute-subnet/database.db
live_only: true
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/nicompute/inventory
cache_timeout: 300
"""

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked_float
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import NiComputeError
from ansible_collections.neuralinternet.compute.plugins.module_utils._inventory import (
    allocation_entries,
    host_name,
    host_variables,
    live_entries,
    public_key_files,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings

FILE_SUFFIXES = (".nicompute.yml", ".nicompute.yaml")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "neuralinternet.compute.nicompute"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(FILE_SUFFIXES)

    def _settings(self):
        settings = Settings.from_params(dict((name, self.get_option(name)) for name in Settings.option_names()))
        settings.validate()
        return settings

    def _fetch(self, settings):
        entries = allocation_entries(settings.db_path, with_password=self.get_option("use_password"))
        if self.get_option("live_only"):
            entries = live_entries(settings, entries, checked_float("check_timeout", self.get_option("check_timeout")))
        return entries

    def _entries(self, path, cache):
        """The raw allocation list: from the cache when it may be used and holds it, else read."""
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        if use_cache:
            try:
                return self._cache[cache_key]
            except KeyError:
                pass
        entries = self._fetch(self._settings())
        if self.get_option("cache"):
            self._cache[cache_key] = entries
        return entries

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        config = self._read_config_data(path)
        # Ansible ignores keys it does not know: a misspelled option would silently keep its default.
        unknown = sorted(set(config) - set(self._options))
        if unknown:
            raise AnsibleParserError("%s: unknown options %s (see ansible-doc -t inventory %s)"
                                     % (path, ", ".join(unknown), self.NAME))
        try:
            entries = self._entries(path, cache)
        except NiComputeError as error:
            raise AnsibleParserError("%s: %s" % (path, error.message))
        group = self.inventory.add_group(self.get_option("group"))
        options = dict((name, self.get_option(name)) for name in ("compose", "groups", "keyed_groups", "strict",
                                                                  "use_password"))
        key_files = public_key_files(self.get_option("private_key_files"))
        for entry in entries:
            self._add_host(group, entry, key_files, options)

    def _add_host(self, group, entry, key_files, options):
        name = self.inventory.add_host(host_name(entry), group=group)
        # Everything here came from a miner or the database: never templated.
        variables = wrap_var(host_variables(entry, key_files, options["use_password"]))
        for key, value in variables.items():
            self.inventory.set_variable(name, key, value)
        strict = options["strict"]
        self._set_composite_vars(options["compose"], variables, name, strict=strict)
        self._add_host_to_composed_groups(options["groups"], variables, name, strict=strict)
        self._add_host_to_keyed_groups(options["keyed_groups"], variables, name, strict=strict)
