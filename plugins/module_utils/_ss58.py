# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# ss58 address validation in plain Python, so bad hotkeys are refused without importing
# bittensor.

from __future__ import annotations

import hashlib

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PREFIX = b"SS58PRE"


def _b58decode(text):
    number = 0
    for char in text:
        index = _ALPHABET.find(char)
        if index < 0:
            raise ValueError("not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading = len(text) - len(text.lstrip("1"))
    return b"\0" * leading + body


def is_ss58_address(address):
    """True for a 32-byte account address in ss58 form with a valid checksum (any simple prefix)."""
    if not isinstance(address, str) or not 40 <= len(address) <= 52:
        return False
    try:
        raw = _b58decode(address)
    except ValueError:
        return False
    # One-byte network prefix (0..63) + 32-byte key + 2-byte checksum.
    if len(raw) != 35 or raw[0] > 63:
        return False
    checksum = hashlib.blake2b(_PREFIX + raw[:33], digest_size=64).digest()[:2]
    return checksum == raw[33:]
