# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# What every nicompute module shares: the common argument spec with environment
# fallbacks, and one place that turns client errors into fail_json.

from __future__ import annotations

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    MissingLibrary,
    NiComputeError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import (
    DEFAULT_WANDB_DIR,
    ENV_FALLBACKS,
    Settings,
)


def _option(kind, default=None, **extra):
    spec = dict(type=kind, **extra)
    if default is not None:
        spec["default"] = default
    return spec


def base_argument_spec():
    """The shared options of the nicompute doc fragment, each with its environment fallback."""
    spec = dict(
        network=_option("str", "finney"),
        netuid=_option("int", 27),
        wallet_name=_option("str", "default"),
        wallet_hotkey=_option("str", "default", no_log=False),
        wallet_path=_option("path", "~/.bittensor/wallets"),
        metagraph_file=_option("path"),
        metagraph_cache_ttl=_option("int", 300),
        db_path=_option("path", required=True),
        db_create=_option("bool", False),
        wandb_mode=_option("str", "auto", choices=["auto", "online", "offline", "disabled"]),
        wandb_api_key=_option("str", no_log=True),
        wandb_entity=_option("str", "neuralinternet"),
        wandb_project=_option("str", "opencompute"),
        wandb_timeout=_option("int", 30),
        wandb_dir=_option("path", DEFAULT_WANDB_DIR),
        wandb_base_url=_option("str"),
        miner_sync_period=_option("int", 900),
        unconfirmed_grace=_option("int", 3600),
    )
    for name, variables in ENV_FALLBACKS.items():
        spec[name]["fallback"] = (env_fallback, list(variables))
    return spec


def settings_from(module):
    return Settings.from_params(module.params)


def _warn(module, result):
    """Hand the result's warnings to module.warn (passing them to exit_json is deprecated)."""
    for warning in result.pop("warnings", None) or ():
        module.warn(warning)
    return result


def fail_from_error(module, error, **result):
    """Turn a client error into fail_json with its message and details."""
    if isinstance(error, MissingLibrary):
        module.fail_json(msg=missing_required_lib(error.library), exception=error.traceback_text, **result)
    details = dict(error.details)
    details.update(result)
    module.fail_json(msg=error.message, error_type=type(error).__name__, **_warn(module, details))


def run_module(module, action):
    """Call action(); a NiComputeError becomes fail_json, anything else propagates."""
    try:
        result = action()
    except NiComputeError as error:
        fail_from_error(module, error)
    module.exit_json(**_warn(module, result))
