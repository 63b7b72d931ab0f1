# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. Typed errors that modules turn into fail_json messages.

from __future__ import annotations


class NiComputeError(Exception):
    """Base error: a message for the user plus structured details for the result."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadInput(NiComputeError):
    """The caller's input is invalid; nothing was changed."""


class Claimed(NiComputeError):
    """Another allocation holds the miner (maybe another run's, still in flight): try the next one."""


class NotFound(NiComputeError):
    """A wallet, hotkey, allocation or miner does not exist."""


class MinerRefused(NiComputeError):
    """A miner answered but refused the request."""


class Unreachable(NiComputeError):
    """A miner or the chain did not answer in time."""


class CryptoError(NiComputeError):
    """The miner's encrypted answer could not be decrypted or parsed."""


class StoreError(NiComputeError):
    """The SQLite store could not be read or written."""


class MissingLibrary(NiComputeError):
    """An optional Python library is not installed."""

    def __init__(self, library, traceback_text=None):
        super().__init__("the Python library %s is required" % library, library=library)
        self.library = library
        self.traceback_text = traceback_text
