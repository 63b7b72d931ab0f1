# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. The range of every number a user can give, and the one check that
# enforces it: finite, within bounds, whole where it must be. NaN passes "<= 0" tests
# and hangs a timeout, so every number goes through here.

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

# Upstream miners schedule the release at now + timeline days with Python's datetime,
# which overflows past year 9999 (about 2.9 million days from now) only after the
# container was started, answering "status false" for a box that runs: a leak. 100
# years stays far inside what every miner accepts.
MAX_TIMELINE_DAYS = 36500

# option -> (minimum, maximum, whole number, minimum excluded)
BOUNDS = {
    "timeline": (1, MAX_TIMELINE_DAYS, True, False),
    "check_timeout": (0, 600, False, True),
    "allocate_timeout": (0, 3600, False, True),
    "timeout": (0, 3600, False, True),
    "max_attempts": (1, 256, True, False),
    "netuid": (0, 65535, True, False),
    "metagraph_cache_ttl": (0, 7 * 86400, True, False),
    "wandb_timeout": (1, 3600, True, False),
    "miner_sync_period": (1, 86400, True, False),
    "unconfirmed_grace": (0, 30 * 86400, True, False),
    "min_validator_stake": (0, 10 ** 12, False, False),
    "gpu_memory": (0, 1024, False, True),
    "gpu_count": (1, 64, True, False),
    "cpu_count": (1, 4096, True, False),
    "ram": (0, 10 ** 6, False, False),
    "disk": (0, 10 ** 7, False, False),
}


def _decimal(option, value):
    if isinstance(value, bool):
        raise BadInput("%s must be a number, got a boolean" % option, option=option)
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        raise BadInput("%s must be a number, got %s" % (option, type(value).__name__), option=option)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BadInput("%s must be a number, got %r" % (option, value), option=option)
    if not number.is_finite():
        raise BadInput("%s must be a finite number, got %r" % (option, value), option=option)
    return number


def checked(option, value, bounds=None):
    """value as a Decimal when it is finite and within the option's bounds; else BadInput naming it."""
    minimum, maximum, whole, exclusive = bounds or BOUNDS[option]
    number = _decimal(option, value)
    if whole and number != number.to_integral_value():
        raise BadInput("%s must be a whole number, got %s" % (option, value), option=option)
    too_small = number <= minimum if exclusive else number < minimum
    if too_small or (maximum is not None and number > maximum):
        low = "greater than %s" % minimum if exclusive else "at least %s" % minimum
        high = "" if maximum is None else " and at most %s" % maximum
        raise BadInput("%s must be %s%s, got %s" % (option, low, high, value), option=option)
    return number


def checked_float(option, value):
    return float(checked(option, value))


def checked_int(option, value):
    return int(checked(option, value))
