# -*- coding: utf-8 -*-
from __future__ import annotations

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.neuralinternet.compute.tests.unit.plugins.modules.quiet_network import quiet_network_options


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result.get("msg"))
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    """Run a module's main() with args; returns (result, failed) instead of exiting."""
    def exit_json(self, **result):
        raise ModuleExit(result, False)

    def fail_json(self, **result):
        raise ModuleExit(result, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(module, args):
        with patch_module_args(args):
            with pytest.raises(ModuleExit) as caught:
                module.main()
        json.dumps(caught.value.result)  # a result must be JSON serialisable
        return caught.value.result, caught.value.failed

    return run


@pytest.fixture
def quiet_network(tmp_path):
    """The shared options pointing at quiet_network.py's network: nobody to contact, nothing to load."""
    return quiet_network_options(tmp_path)
