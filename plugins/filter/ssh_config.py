# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: ssh_config
short_description: OpenSSH client configuration for allocated NI Compute (SN27) boxes
version_added: 0.1.0
description:
  - Turns inventory hosts made by the C(neuralinternet.compute.nicompute) inventory plugin into
    OpenSSH C(Host) sections, so that C(ssh <allocation-name>) logs in.
  - Each section has C(HostName), C(Port), C(User) and, when the host has one,
    C(IdentityFile) with C(IdentitiesOnly yes).
  - Address, port and user come from miners. A value that could change the meaning of the
    configuration (a space, a newline, a quote, anything but the characters an address, a
    number or a user name needs) is never written; that host is left out with a comment saying
    why.
options:
  _input:
    description: The names of the hosts, for example C(groups['nicompute']).
    type: list
    elements: str
    required: true
  hostvars:
    description: Ansible's C(hostvars), from which each host's connection variables are read.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Keep an OpenSSH config block of the allocations in ~/.ssh/config
  ansible.builtin.blockinfile:
    path: ~/.ssh/config
    marker: "# {mark} neuralinternet.compute allocations"
    block: "{{ groups['nicompute'] | default([]) | neuralinternet.compute.ssh_config(hostvars) }}"
"""

RETURN = r"""
_value:
  description: The C(Host) sections, one per host, separated by blank lines; empty when there is no host.
  type: string
"""

import re

from ansible.errors import AnsibleFilterError

_HOST_ALIAS = re.compile(r"^[A-Za-z0-9_.-]+$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.:-]+$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PATH = re.compile(r"^[A-Za-z0-9_./~+-]+$")


def _port(value):
    try:
        port = int(str(value))
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def _section(name, variables):
    """(lines, None) for one host, or (None, why) when a value is unsafe to write."""
    address, user = str(variables.get("ansible_host", "")), str(variables.get("ansible_user", ""))
    port = _port(variables.get("ansible_port", 22))
    if not _HOST_ALIAS.match(name):
        return None, "its name is not a plain host alias"
    if not _ADDRESS.match(address):
        return None, "its address is not a plain host name or IP address"
    if port is None:
        return None, "its port is not a number from 1 to 65535"
    if user and not _USER.match(user):
        return None, "its user name holds characters a user name has not"
    lines = ["Host %s" % name, "    HostName %s" % address, "    Port %s" % port]
    if user:
        lines.append("    User %s" % user)
    key_file = variables.get("ansible_ssh_private_key_file")
    if key_file:
        if not _PATH.match(str(key_file)):
            return None, "its key file path holds characters this block does not write"
        lines += ["    IdentityFile %s" % key_file, "    IdentitiesOnly yes"]
    return lines, None


def ssh_config(hosts, hostvars):
    """OpenSSH Host sections for hosts, read from hostvars; unsafe hosts left out with a comment."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("ssh_config expects a list of host names, got %s" % type(hosts).__name__)
    sections = []
    for name in hosts:
        try:
            variables = hostvars[name]
        except KeyError:
            raise AnsibleFilterError("ssh_config: %s is not in hostvars" % name)
        lines, why = _section(str(name), variables)
        if lines is None:
            sections.append(["# %s left out: %s" % (name if _HOST_ALIAS.match(str(name)) else "a host", why)])
        else:
            sections.append(lines)
    return "\n\n".join("\n".join(lines) for lines in sections)


class FilterModule:
    def filters(self):
        return {"ssh_config": ssh_config}
