# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: resource_table
short_description: Render NI Compute (SN27) miner resources as an aligned text table
version_added: 0.1.0
description:
  - Turns the rows that M(neuralinternet.compute.nicompute_resources) returns in
    RV(neuralinternet.compute.nicompute_resources#module:resources) into one aligned text table, one line
    per miner in input order, optionally followed by its
    RV(neuralinternet.compute.nicompute_resources#module:summary).
  - "Columns, in this order by default: C(UID), C(HOTKEY), C(GPU) (the name the driver reports),
    C(GB) (memory per GPU), C(N) (GPU count, C(0) for a CPU-only miner), C(CPU), C(RAM GB) (available),
    C(DISK GB) (free), C(SCORE) (proof-of-GPU score), C(STATUS), and C(NOTE)."
  - C(NOTE) gathers, separated by C(; ), the row's C(reason), C(reserved by) and the validator hotkeys
    of C(reserved_by) that the reason does not already name, and C(allocation:) and the name of our allocation. It is last so that a long note
    never shifts another column.
  - Numbers are right-aligned and text left-aligned; a null (or empty) value prints as C(-). Column
    widths follow the data. RAM and disk print with at most one decimal, the score with at most four;
    every value of a column has the same number of decimals.
  - A hotkey prints as its first 6 characters, C(...) and its last 4 (C(5F3sa2...YjQX)). Two different
    hotkeys of the same table that would shorten alike print whole, so a short form never stands for
    two keys. O(full_hotkeys=true) prints every hotkey whole.
  - Values come from miners and are never evaluated - they are printed as text. Control and format
    characters (newlines, tabs, escape sequences, bidirectional overrides) and combining marks are
    removed or turned into one space, so a crafted GPU name cannot break the layout or add lines.
    A cell wider than 40 columns (64 for a hotkey, 200 for the note) is cut and ends in C(...). Wide
    (East Asian) characters count as two columns.
  - The result is one string, lines joined with C(\n) and no trailing spaces. The default callback
    prints a string's newlines as C(\n) escapes; call the string's C(splitlines) (or C(split)) method
    to print one list item per line, or set the callback's C(result_format) to V(yaml). See EXAMPLES.
  - An empty list prints C(No miners matched.) (and the summary when given).
options:
  _input:
    description:
      - The rows - RV(neuralinternet.compute.nicompute_resources#module:resources). Each row is a
        dictionary with the keys C(hotkey), C(uid), C(gpu_name), C(gpu_memory_gb), C(gpu_memory_mib),
        C(gpu_count), C(cpu_count), C(ram_gb), C(disk_gb), C(score), C(incentive), C(status),
        C(reason), C(reserved_by) and C(allocation). A missing key prints like a null value.
    type: list
    elements: dict
    required: true
  summary:
    description:
      - RV(neuralinternet.compute.nicompute_resources#module:summary). When set, the table is
        followed by a line with the number of miners per status and two sub-tables, C(Instances by GPU
        type and count) (C(GPU), C(N), C(INSTANCES), C(AVAILABLE)) and C(GPUs by type) (C(GPU),
        C(TOTAL), C(AVAILABLE)).
    type: dict
  full_hotkeys:
    description:
      - Print hotkeys (in C(HOTKEY) and in C(NOTE)) whole instead of shortened.
    type: bool
    default: false
  columns:
    description:
      - The columns to print, in this order, by row key - V(uid), V(hotkey), V(gpu_name),
        V(gpu_memory_gb), V(gpu_memory_mib) (C(MIB), not printed by default), V(gpu_count),
        V(cpu_count), V(ram_gb), V(disk_gb), V(score), V(incentive) (C(INCENTIVE), not printed by
        default), V(status), and V(note).
      - The default prints every column but V(gpu_memory_mib) and V(incentive). An unknown or repeated
        name is an error.
    type: list
    elements: str
author:
  - neuralinternet.compute contributors (@neuralinternet)
"""

EXAMPLES = r"""
- name: List the subnet's miners
  neuralinternet.compute.nicompute_resources:
  register: result

# One list item per line reads well in the default callback.
- name: Show them as a table
  ansible.builtin.debug:
    msg: "{{ (result.resources | neuralinternet.compute.resource_table(summary=result.summary)).splitlines() }}"

# As one string: the default callback shows it with \n escapes, unless it runs with
# ANSIBLE_CALLBACK_RESULT_FORMAT=yaml, which prints it as a block.
- name: Show the table as one string
  ansible.builtin.debug:
    msg: "{{ result.resources | neuralinternet.compute.resource_table(summary=result.summary) }}"

- name: Only what matters to pick a box, with whole hotkeys
  ansible.builtin.debug:
    msg: >-
      {{ (result.resources
          | selectattr('status', 'equalto', 'available')
          | neuralinternet.compute.resource_table(full_hotkeys=true,
              columns=['uid', 'hotkey', 'gpu_name', 'gpu_count', 'score'])).splitlines() }}

- name: Keep the table in a file
  ansible.builtin.copy:
    content: "{{ result.resources | neuralinternet.compute.resource_table(summary=result.summary) }}\n"
    dest: /tmp/sn27-resources.txt
    mode: "0644"
"""

RETURN = r"""
_value:
  description:
    - The table (and the summary when O(summary) is set), lines joined with C(\n), no trailing newline.
      EXAMPLES shows one.
  type: string
"""

import math
import unicodedata
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.unsafe_proxy import wrap_var

GAP = "  "
# ASCII: a terminal without UTF-8 (and JSON callbacks) would print a Unicode ellipsis as \u2026.
ELLIPSIS = "..."
NULL = "-"
CELL_LIMIT = 40
NOTE_LIMIT = 200
HOTKEY_LIMIT = 64
# A hotkey keeps this many characters before and after the ellipsis.
HOTKEY_HEAD = 6
HOTKEY_TAIL = 4
# Known statuses, in the order the summary line lists them; others follow as given.
STATUSES = ("available", "allocated", "reserved", "penalized", "offline", "invalid")

# Categories turned into one space (controls, line/paragraph separators, other spaces) and
# categories dropped (format chars such as bidi overrides, surrogates, private use, unassigned,
# zero-width combining marks): none of them may reach a terminal from a miner.
_SPACE_CATEGORIES = frozenset(("Cc", "Zl", "Zp", "Zs"))
_DROP_CATEGORIES = frozenset(("Cf", "Cs", "Co", "Cn", "Mn", "Me"))


class Column:
    def __init__(self, key, header, align="left", kind="text", decimals=0, limit=CELL_LIMIT):
        self.key = key
        self.header = header
        self.align = align
        self.kind = kind
        self.decimals = decimals
        self.limit = limit


COLUMNS = dict((column.key, column) for column in (
    Column("uid", "UID", "right", "int"),
    Column("hotkey", "HOTKEY", kind="hotkey", limit=HOTKEY_LIMIT),
    Column("gpu_name", "GPU"),
    Column("gpu_memory_gb", "GB", "right", "int"),
    Column("gpu_memory_mib", "MIB", "right", "int"),
    Column("gpu_count", "N", "right", "int"),
    Column("cpu_count", "CPU", "right", "int"),
    Column("ram_gb", "RAM GB", "right", "float", 1),
    Column("disk_gb", "DISK GB", "right", "float", 1),
    Column("score", "SCORE", "right", "float", 4),
    Column("incentive", "INCENTIVE", "right", "float", 6),
    Column("status", "STATUS"),
    Column("note", "NOTE", kind="note", limit=NOTE_LIMIT),
))
DEFAULT_COLUMNS = ("uid", "hotkey", "gpu_name", "gpu_memory_gb", "gpu_count", "cpu_count", "ram_gb", "disk_gb",
                   "score", "status", "note")


def clean_text(value):
    """Miner-supplied value as one line of printable text: never evaluated, no control characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = unicodedata.normalize("NFC", to_text(value, errors="surrogate_or_replace"))
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in _SPACE_CATEGORIES:
            kept.append(" ")
        elif category not in _DROP_CATEGORIES:
            kept.append(char)
    return " ".join("".join(kept).split())


def _char_width(char):
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text):
    """Terminal columns that cleaned text takes (wide East Asian characters take two)."""
    return sum(_char_width(char) for char in text)


def _truncate(text, limit):
    if display_width(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        used += _char_width(char)
        if used > limit - len(ELLIPSIS):
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decimals_needed(value, most):
    digits = ("%.*f" % (most, value)).rstrip("0")
    return len(digits.split(".")[1]) if "." in digits else 0


def _format_numbers(values, column):
    """Cells of one numeric column; floats share as few decimals as every value needs."""
    finite = [value for value in values if _is_number(value) and math.isfinite(value)]
    places = 0
    if column.kind == "float":
        places = max([_decimals_needed(value, column.decimals) for value in finite] or [0])
    cells = []
    for value in values:
        if value is None:
            cells.append(NULL)
        elif not _is_number(value):
            cells.append(clean_text(value) or NULL)
        elif not math.isfinite(value):
            cells.append(str(value))
        elif column.kind == "int" and (isinstance(value, int) or value == int(value)):
            cells.append(str(int(value)))
        elif column.kind == "int":
            cells.append(_trim_float(value, 3))
        else:
            cells.append("%.*f" % (places, value))
    return cells


def _trim_float(value, most):
    text = "%.*f" % (most, value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _short_hotkey(hotkey):
    if len(hotkey) <= HOTKEY_HEAD + HOTKEY_TAIL + 2:
        return hotkey
    return hotkey[:HOTKEY_HEAD] + ELLIPSIS + hotkey[-HOTKEY_TAIL:]


class HotkeyNames:
    """How each hotkey of a table prints: shortened unless that would make two keys look alike."""

    def __init__(self, hotkeys, full):
        self.full = full
        owners = {}
        for hotkey in set(hotkeys):
            owners.setdefault(_short_hotkey(hotkey), set()).add(hotkey)
        self.ambiguous = set(short for short, keys in owners.items() if len(keys) > 1)

    def name(self, hotkey):
        if self.full:
            return hotkey
        short = _short_hotkey(hotkey)
        return hotkey if short in self.ambiguous else short


def _hotkey_text(value):
    return None if value is None else clean_text(value)


def _reserved_by(row):
    value = row.get("reserved_by")
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = [value]
    return [text for text in (_hotkey_text(item) for item in value) if text]


def _note(row, names):
    parts = []
    reason = clean_text(row["reason"]) if row.get("reason") is not None else ""
    if reason:
        parts.append(reason)
    # A reason that already names a reserving validator need not name it twice.
    reserved = [hotkey for hotkey in _reserved_by(row) if hotkey not in reason]
    if reserved:
        parts.append("reserved by " + ", ".join(names.name(hotkey) for hotkey in reserved))
    allocation = clean_text(row["allocation"]) if row.get("allocation") is not None else ""
    if allocation:
        parts.append("allocation: " + allocation)
    return "; ".join(parts)


def _text_cells(rows, column, names):
    cells = []
    for row in rows:
        if column.kind == "note":
            cells.append(_note(row, names))
            continue
        value = row.get(column.key)
        if value is None:
            cells.append(NULL)
        elif column.kind == "hotkey":
            cells.append(names.name(clean_text(value)) or NULL)
        else:
            cells.append(clean_text(value) or NULL)
    return cells


def _pad(text, width, align):
    padding = " " * (width - display_width(text))
    return padding + text if align == "right" else text + padding


def render_table(columns, cell_columns):
    """Lines of an aligned table: columns are Column objects, cell_columns one list of cells per column."""
    cell_columns = [[_truncate(cell, column.limit) for cell in cells] for column, cells in zip(columns, cell_columns)]
    widths = [max([display_width(column.header)] + [display_width(cell) for cell in cells])
              for column, cells in zip(columns, cell_columns)]
    lines = [GAP.join(_pad(column.header, width, column.align) for column, width in zip(columns, widths)).rstrip()]
    for cells in zip(*cell_columns):
        lines.append(GAP.join(_pad(cell, width, column.align) for cell, column, width in zip(cells, columns, widths)).rstrip())
    return lines


def _columns(value):
    if value is None:
        return [COLUMNS[key] for key in DEFAULT_COLUMNS]
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise AnsibleFilterError("resource_table: columns must be a non-empty list of column names, got %s"
                                 % _type_name(value))
    keys = [to_text(key) for key in value]
    unknown = [key for key in keys if key not in COLUMNS]
    if unknown:
        raise AnsibleFilterError("resource_table: unknown column(s) %s; known columns: %s"
                                 % (", ".join(repr(clean_text(key)) for key in unknown), ", ".join(COLUMNS)))
    repeated = sorted(set(key for key in keys if keys.count(key) > 1))
    if repeated:
        raise AnsibleFilterError("resource_table: column(s) given more than once: %s" % ", ".join(repeated))
    return [COLUMNS[key] for key in keys]


def _type_name(value):
    return type(value).__name__ if value is not None else "null"


def _check_rows(rows):
    if isinstance(rows, Mapping):
        raise AnsibleFilterError("resource_table expects a list of resource rows, got a dict "
                                 "(pass result.resources, not the whole result)")
    if not isinstance(rows, (list, tuple)):
        raise AnsibleFilterError("resource_table expects a list of resource rows, got %s" % _type_name(rows))
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise AnsibleFilterError("resource_table: row %d is %s, not a dict" % (index, _type_name(row)))


def _table_lines(rows, columns, full_hotkeys):
    if not rows:
        return ["No miners matched."]
    hotkeys = []
    for row in rows:
        if row.get("hotkey") is not None:
            hotkeys.append(clean_text(row["hotkey"]))
        hotkeys.extend(_reserved_by(row))
    names = HotkeyNames([hotkey for hotkey in hotkeys if hotkey], full_hotkeys)
    cell_columns = []
    for column in columns:
        if column.align == "right":
            cell_columns.append(_format_numbers([row.get(column.key) for row in rows], column))
        else:
            cell_columns.append(_text_cells(rows, column, names))
    return render_table(columns, cell_columns)


def _summary_entries(summary, key):
    entries = summary.get(key)
    if entries is None:
        return None
    if not isinstance(entries, (list, tuple)) or not all(isinstance(entry, Mapping) for entry in entries):
        raise AnsibleFilterError("resource_table: summary.%s must be a list of dicts" % key)
    return entries


def _status_line(summary):
    by_status = summary.get("by_status") or {}
    if not isinstance(by_status, Mapping):
        raise AnsibleFilterError("resource_table: summary.by_status must be a dict, got %s" % _type_name(by_status))
    order = [status for status in STATUSES if status in by_status]
    order += [status for status in by_status if status not in STATUSES]
    counts = ["%s %s" % (_count_text(by_status[status]), clean_text(status)) for status in order if by_status[status]]
    miners = summary.get("miners")
    if miners is None:
        head = "Miners"
    else:
        head = "%s %s" % (_count_text(miners), "miner" if miners == 1 else "miners")
    return head + (": " + ", ".join(counts) if counts else "")


def _count_text(value):
    return str(value) if _is_number(value) else (clean_text(value) or NULL)


def _sub_table(title, entries, columns):
    lines = [title + ":"]
    if not entries:
        return lines + ["none"]
    cell_columns = []
    for column in columns:
        values = [entry.get(column.key) for entry in entries]
        if column.align == "right":
            cell_columns.append(_format_numbers(values, column))
        else:
            cell_columns.append([NULL if value is None else (clean_text(value) or NULL) for value in values])
    return lines + render_table(columns, cell_columns)


SUMMARY_GPU = Column("gpu_name", "GPU")
INSTANCE_COLUMNS = (SUMMARY_GPU, Column("gpu_count", "N", "right", "int"), Column("instances", "INSTANCES", "right", "int"),
                    Column("available", "AVAILABLE", "right", "int"))
GPU_COLUMNS = (SUMMARY_GPU, Column("total", "TOTAL", "right", "int"), Column("available", "AVAILABLE", "right", "int"))


def _summary_lines(summary):
    if not isinstance(summary, Mapping):
        raise AnsibleFilterError("resource_table: summary must be a dict (the module's summary), got %s" % _type_name(summary))
    lines = ["", _status_line(summary)]
    instances = _summary_entries(summary, "instances")
    if instances is not None:
        lines += [""] + _sub_table("Instances by GPU type and count", instances, INSTANCE_COLUMNS)
    gpus = _summary_entries(summary, "gpus")
    if gpus is not None:
        lines += [""] + _sub_table("GPUs by type", gpus, GPU_COLUMNS)
    return lines


def resource_table(rows, summary=None, full_hotkeys=False, columns=None):
    """The nicompute_resources rows (and summary) as one aligned text table."""
    _check_rows(rows)
    try:
        full = boolean(full_hotkeys, strict=True)
    except TypeError as error:
        raise AnsibleFilterError("resource_table: full_hotkeys must be a boolean: %s" % error) from None
    lines = _table_lines(rows, _columns(columns), full)
    if summary is not None:
        lines += _summary_lines(summary)
    # The text holds miner-supplied values: it must never be templated again.
    return wrap_var("\n".join(lines))


class FilterModule:
    def filters(self):
        return {"resource_table": resource_table}
