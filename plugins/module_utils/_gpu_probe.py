# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. What a box's GPUs are, read from the output of
#   nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits

from __future__ import annotations

import re

from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import printed_gb

QUERY = "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits"
# What nvidia-smi prints for a field the driver does not know, and when it finds no GPU at all.
_UNKNOWN = frozenset(("[n/a]", "n/a", "[not supported]", "[unknown error]", "[insufficient permissions]"))
_NO_DEVICES = "no devices were found"
# memory.total in MiB; " MiB" is allowed so that output queried without nounits parses too.
_MEMORY = re.compile(r"^(\d+)(?:\s*MiB)?$", re.IGNORECASE)


class NvidiaSmiOutputError(ValueError):
    """A line of nvidia-smi output that is not "name, memory"; line_number counts from 1."""

    def __init__(self, line_number, line, reason):
        super().__init__("nvidia-smi output line %d is not 'name, memory.total in MiB' (%s): %r"
                         % (line_number, reason, line))
        self.line_number = line_number
        self.line = line
        self.reason = reason


def _known(field):
    return None if field.lower() in _UNKNOWN else field


def parse_gpu_line(line, line_number=1):
    """One GPU from one line: {"name", "memory_mib", "memory_gb"}; unknown fields are None.

    memory_gb is the size printed on the card in decimal GB (the collection's printed_gb).
    Raises NvidiaSmiOutputError naming the line when it is not "name, memory".
    """
    # GPU names hold no comma in practice; splitting at the last one keeps a name that did.
    name, comma, memory = line.strip().rpartition(",")
    if not comma:
        raise NvidiaSmiOutputError(line_number, line, "no comma")
    name, memory = _known(name.strip()), _known(memory.strip())
    if name is not None and not name:
        raise NvidiaSmiOutputError(line_number, line, "no name")
    memory_mib = None
    if memory is not None:
        match = _MEMORY.match(memory)
        if not match:
            raise NvidiaSmiOutputError(line_number, line, "memory is not a whole number of MiB")
        memory_mib = int(match.group(1))
        if memory_mib <= 0:
            raise NvidiaSmiOutputError(line_number, line, "memory is not positive")
    return {"name": name, "memory_mib": memory_mib, "memory_gb": printed_gb(name, memory_mib)}


def parse_nvidia_smi(text):
    """The GPUs in nvidia-smi's query output, in its order; [] for no output or "No devices were found".

    Blank lines and surrounding spaces are ignored; "[N/A]" and "[Not Supported]" fields become
    None. Any other line that is not "name, memory" raises NvidiaSmiOutputError naming it.
    """
    if text is None:
        return []
    if not isinstance(text, str):
        raise TypeError("nvidia-smi output must be text, got %s" % type(text).__name__)
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) == 1 and lines[0][1].strip().lower().rstrip(".") == _NO_DEVICES:
        return []
    return [parse_gpu_line(line, number) for number, line in lines]
