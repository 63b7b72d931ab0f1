# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The ssh_config filter: Host sections from inventory host variables, and values from miners that
# would change the meaning of an OpenSSH configuration are never written.

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.neuralinternet.compute.plugins.filter.ssh_config import FilterModule, ssh_config

BOX = {"ansible_host": "127.0.0.12", "ansible_port": 4444, "ansible_user": "root"}


def test_one_section_per_host_with_key_file():
    hostvars = {"train": dict(BOX, ansible_ssh_private_key_file="/root/.ssh/id_ed25519"),
                "render": dict(BOX, ansible_host="203.0.113.9", ansible_port="2222")}
    assert ssh_config(["train", "render"], hostvars) == (
        "Host train\n    HostName 127.0.0.12\n    Port 4444\n    User root\n"
        "    IdentityFile /root/.ssh/id_ed25519\n    IdentitiesOnly yes\n\n"
        "Host render\n    HostName 203.0.113.9\n    Port 2222\n    User root")


def test_no_hosts_give_an_empty_block():
    assert ssh_config([], {}) == ""


@pytest.mark.parametrize("variables, why", [
    (dict(BOX, ansible_host="127.0.0.1\n    ProxyCommand touch /tmp/x"), "address"),
    (dict(BOX, ansible_host="1.2.3.4 -oProxyCommand=x"), "address"),
    (dict(BOX, ansible_user="root\nHost *\n  ProxyCommand x"), "user name"),
    (dict(BOX, ansible_user='"root"'), "user name"),
    (dict(BOX, ansible_port="22 x"), "port"),
    (dict(BOX, ansible_port=0), "port"),
    (dict(BOX, ansible_port=70000), "port"),
    (dict(BOX, ansible_ssh_private_key_file="/tmp/key\n    ProxyCommand x"), "key file"),
])
def test_a_value_that_could_change_the_configuration_leaves_the_host_out(variables, why):
    text = ssh_config(["evil", "good"], {"evil": variables, "good": BOX})
    assert text.startswith("# evil left out: ") and why in text.split("\n", maxsplit=1)[0]
    assert "ProxyCommand" not in text and "Host *" not in text
    assert text.endswith("Host good\n    HostName 127.0.0.12\n    Port 4444\n    User root")


def test_bad_input_is_an_error_naming_it():
    with pytest.raises(AnsibleFilterError, match="expects a list of host names"):
        ssh_config("train", {})
    with pytest.raises(AnsibleFilterError, match="missing is not in hostvars"):
        ssh_config(["missing"], {})


def test_the_filter_is_registered():
    assert FilterModule().filters()["ssh_config"] is ssh_config
