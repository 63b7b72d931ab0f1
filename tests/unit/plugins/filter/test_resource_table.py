# -*- coding: utf-8 -*-
# The resource_table filter: what the user reads after nicompute_resources - alignment, nulls,
# hotkeys, summaries, and miner-supplied text that must not break the layout.

from __future__ import annotations

import unicodedata

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.neuralinternet.compute.plugins.filter.resource_table import FilterModule, resource_table

HK_A = "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX"
HK_B = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"
HK_C = "5CLkGR5xW6HpbCLFLMy5NWfSrRxohkzBLwkW4c9HvKKvndme"
HK_D = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"
VALIDATOR = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"

HEADERS = ["UID", "HOTKEY", "GPU", "GB", "N", "CPU", "RAM GB", "DISK GB", "SCORE", "STATUS", "NOTE"]
RIGHT = {"UID", "GB", "N", "CPU", "RAM GB", "DISK GB", "SCORE", "MIB", "INCENTIVE", "TOTAL", "INSTANCES", "AVAILABLE"}


def row(**values):
    base = dict(hotkey=None, uid=None, gpu_name=None, gpu_memory_gb=None, gpu_memory_mib=None, gpu_count=None,
                cpu_count=None, ram_gb=None, disk_gb=None, score=None, incentive=None, status="available",
                reason=None, reserved_by=[], allocation=None)
    base.update(values)
    return base


def four_rows():
    return [
        row(hotkey=HK_A, uid=3, gpu_name="NVIDIA H100 80GB HBM3", gpu_memory_gb=80, gpu_memory_mib=81559, gpu_count=8,
            cpu_count=224, ram_gb=1843.24, disk_gb=7000.5, score=0.91, incentive=0.0123),
        row(hotkey=HK_B, uid=17, gpu_name="NVIDIA GeForce RTX 4090", gpu_memory_gb=24, gpu_memory_mib=24564, gpu_count=1,
            cpu_count=32, ram_gb=120, disk_gb=850.0, score=0.27, status="allocated", allocation="training-box"),
        row(hotkey=HK_C, uid=42, gpu_name="NVIDIA H100 80GB HBM3", gpu_memory_gb=80, gpu_count=8, cpu_count=192,
            ram_gb=1500.0, disk_gb=3000.0, score=0.8, status="reserved", reason="reserved elsewhere",
            reserved_by=[VALIDATOR]),
        row(hotkey=HK_D, uid=101, status="invalid", reason="invalid specs: not JSON"),
    ]


SUMMARY = {
    "miners": 4,
    "by_status": {"invalid": 1, "available": 1, "allocated": 1, "reserved": 1, "offline": 0},
    "instances": [{"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 8, "instances": 2, "available": 1},
                  {"gpu_name": "NVIDIA GeForce RTX 4090", "gpu_count": 1, "instances": 1, "available": 0}],
    "gpus": [{"gpu_name": "NVIDIA H100 80GB HBM3", "total": 16, "available": 8},
             {"gpu_name": "NVIDIA GeForce RTX 4090", "total": 1, "available": 0}],
}


def width(text):
    """Terminal columns, counted independently of the plugin."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def cell_spans(line, cells):
    """(start, end) terminal columns of each expected cell, found left to right; gaps must be blank."""
    spans, cursor = [], 0
    for cell in cells:
        if cell == "":
            spans.append(None)
            continue
        found = line.index(cell, cursor)
        assert line[cursor:found].strip() == "", "unexpected text %r before %r in %r" % (line[cursor:found], cell, line)
        assert cursor == 0 or found - cursor >= 2, "cells %r run together in %r" % (cell, line)
        start = width(line[:found])
        spans.append((start, start + width(cell)))
        cursor = found + len(cell)
    assert line[cursor:] == "", "unexpected trailing text %r in %r" % (line[cursor:], line)
    return spans


def assert_aligned(lines, table):
    """lines[i] holds exactly the cells table[i]; left columns share starts, right columns share ends."""
    assert len(lines) == len(table)
    headers = table[0]
    spans = [cell_spans(line, cells) for line, cells in zip(lines, table)]
    for index, header in enumerate(headers):
        edge = 1 if header in RIGHT else 0
        positions = set(span[index][edge] for span in spans if span[index] is not None)
        assert len(positions) == 1, "column %s is not aligned: %s\n%s" % (header, positions, "\n".join(lines))


def test_every_column_lines_up_whatever_the_widths_of_its_cells():
    lines = resource_table(four_rows()).split("\n")

    assert_aligned(lines, [
        HEADERS,
        ["3", "5F3sa2...YjQX", "NVIDIA H100 80GB HBM3", "80", "8", "224", "1843.2", "7000.5", "0.91", "available", ""],
        ["17", "5DAAnr...TXFy", "NVIDIA GeForce RTX 4090", "24", "1", "32", "120.0", "850.0", "0.27", "allocated",
         "allocation: training-box"],
        ["42", "5CLkGR...ndme", "NVIDIA H100 80GB HBM3", "80", "8", "192", "1500.0", "3000.0", "0.80", "reserved",
         "reserved elsewhere; reserved by 5Grwva...utQY"],
        ["101", "5HGjWA...UMaw", "-", "-", "-", "-", "-", "-", "-", "invalid", "invalid specs: not JSON"],
    ])


def test_numbers_are_right_aligned_and_text_left_aligned():
    lines = resource_table(four_rows()).split("\n")

    assert lines[1].startswith("  3  5F3sa2")
    assert lines[4].startswith("101  5HGjWA")
    assert "  -  -    -       -        -      -  invalid" in lines[4]


def test_rows_keep_their_input_order():
    rows = [row(hotkey=HK_A, uid=9), row(hotkey=HK_B, uid=2), row(hotkey=HK_C, uid=5)]

    uids = [line.split()[0] for line in resource_table(rows).split("\n")[1:]]

    assert uids == ["9", "2", "5"]


def test_null_and_missing_values_print_as_a_dash_and_no_line_has_trailing_spaces():
    rows = [row(hotkey=HK_A, uid=1, gpu_name="NVIDIA A100-SXM4-80GB", gpu_memory_gb=80, gpu_count=4, cpu_count=64,
                ram_gb=500.0, disk_gb=900.0, score=0.5),
            {"hotkey": None, "status": None},
            row(hotkey=HK_B, uid=3, gpu_name="", gpu_count=0, cpu_count=8, status="offline")]

    lines = resource_table(rows).split("\n")

    assert_aligned(lines, [
        HEADERS,
        ["1", "5F3sa2...YjQX", "NVIDIA A100-SXM4-80GB", "80", "4", "64", "500", "900", "0.5", "available", ""],
        ["-", "-", "-", "-", "-", "-", "-", "-", "-", "-", ""],
        ["3", "5DAAnr...TXFy", "-", "-", "0", "8", "-", "-", "-", "offline", ""],
    ])
    assert all(line == line.rstrip() for line in lines)
    assert "None" not in "\n".join(lines)


def test_floats_of_a_column_share_the_fewest_decimals_that_show_every_value():
    rows = [row(uid=1, ram_gb=64, disk_gb=100, score=1), row(uid=2, ram_gb=63.75, disk_gb=250, score=2),
            row(uid=3, ram_gb=8.0, disk_gb=12.0, score=0.125)]

    lines = resource_table(rows, columns=["uid", "ram_gb", "disk_gb", "score"]).split("\n")

    assert_aligned(lines, [
        ["UID", "RAM GB", "DISK GB", "SCORE"],
        ["1", "64.0", "100", "1.000"],
        ["2", "63.8", "250", "2.000"],
        ["3", "8.0", "12", "0.125"],
    ])


def test_hotkeys_are_shortened_to_six_and_four_characters():
    table = resource_table(four_rows())

    assert "5F3sa2...YjQX" in table
    assert "5Grwva...utQY" in table
    assert HK_A not in table and VALIDATOR not in table


def test_full_hotkeys_prints_every_hotkey_whole():
    table = resource_table(four_rows(), full_hotkeys=True)

    for hotkey in (HK_A, HK_B, HK_C, HK_D, VALIDATOR):
        assert hotkey in table
    assert "..." not in table
    assert_aligned(table.split("\n")[:2], [
        HEADERS, ["3", HK_A, "NVIDIA H100 80GB HBM3", "80", "8", "224", "1843.2", "7000.5", "0.91", "available", ""]])


def test_full_hotkeys_accepts_what_ansible_calls_true_and_refuses_the_rest():
    assert HK_A in resource_table(four_rows(), full_hotkeys="yes")
    with pytest.raises(AnsibleFilterError, match="full_hotkeys"):
        resource_table(four_rows(), full_hotkeys="maybe")


def test_two_hotkeys_that_would_shorten_alike_print_whole():
    twin = HK_A[:6] + "x" * 38 + HK_A[-4:]
    rows = [row(hotkey=HK_A, uid=1), row(hotkey=twin, uid=2), row(hotkey=HK_B, uid=3)]

    lines = resource_table(rows).split("\n")

    assert HK_A in lines[1]
    assert twin in lines[2]
    assert "5DAAnr...TXFy" in lines[3]


def test_a_reserving_validator_that_looks_like_a_miner_prints_whole():
    twin = HK_A[:6] + "y" * 38 + HK_A[-4:]
    rows = [row(hotkey=HK_A, uid=1), row(hotkey=HK_B, uid=2, status="reserved", reserved_by=[twin])]

    table = resource_table(rows)

    assert "reserved by " + twin in table
    assert HK_A in table


def test_the_note_joins_reason_reservations_and_allocation():
    rows = [row(hotkey=HK_A, uid=1, status="reserved", reason="held", reserved_by=[VALIDATOR, HK_B], allocation="box")]

    note = resource_table(rows).split("\n")[1].split("reserved  ")[1]

    assert note == "held; reserved by 5Grwva...utQY, 5DAAnr...TXFy; allocation: box"


def test_the_note_does_not_repeat_a_validator_the_reason_names():
    rows = [row(hotkey=HK_A, uid=1, status="reserved", reason="listed by validator %s (stake 2000)" % VALIDATOR,
                reserved_by=[VALIDATOR, HK_B])]

    note = resource_table(rows).split("\n")[1].split("reserved  ")[1]

    assert note == "listed by validator %s (stake 2000); reserved by 5DAAnr...TXFy" % VALIDATOR


def test_an_unknown_status_is_printed_as_it_is():
    assert resource_table([row(hotkey=HK_A, uid=1, status="quarantined")]).split("\n")[1].endswith("quarantined")


def test_the_summary_follows_with_status_counts_and_two_aligned_sub_tables():
    lines = resource_table(four_rows(), summary=SUMMARY).split("\n")

    assert lines[5:8] == ["", "4 miners: 1 available, 1 allocated, 1 reserved, 1 invalid", ""]
    assert lines[8] == "Instances by GPU type and count:"
    assert_aligned(lines[9:12], [
        ["GPU", "N", "INSTANCES", "AVAILABLE"],
        ["NVIDIA H100 80GB HBM3", "8", "2", "1"],
        ["NVIDIA GeForce RTX 4090", "1", "1", "0"],
    ])
    assert lines[12:14] == ["", "GPUs by type:"]
    assert_aligned(lines[14:], [
        ["GPU", "TOTAL", "AVAILABLE"],
        ["NVIDIA H100 80GB HBM3", "16", "8"],
        ["NVIDIA GeForce RTX 4090", "1", "0"],
    ])


def test_without_a_summary_only_the_table_is_printed():
    assert len(resource_table(four_rows()).split("\n")) == 5


def test_an_empty_list_says_no_miner_matched():
    assert resource_table([]) == "No miners matched."


def test_an_empty_list_still_prints_the_summary():
    summary = {"miners": 0, "by_status": {}, "instances": [], "gpus": []}

    lines = resource_table([], summary=summary).split("\n")

    assert lines == ["No miners matched.", "", "0 miners", "", "Instances by GPU type and count:", "none", "",
                     "GPUs by type:", "none"]


@pytest.mark.parametrize("evil", [
    "NVIDIA\nUID  FAKE LINE",
    "NVIDIA\r\nFAKE",
    "NVIDIA\x1b[2J\x1b[31mred",
    "NVIDIA\tH100",
    "NVIDIA\u2028FAKE\u2029LINE",
    "NVIDIA\x85FAKE\x0bLINE\x0cX\x1cY",
    "NVIDIA\u202eevil\u202c\u200b",
    "NVIDIA H\u0489\u20dd100 zalgo",
])
def test_control_characters_in_miner_values_cannot_add_lines_or_shift_columns(evil):
    rows = [row(hotkey=HK_A, uid=1, gpu_name=evil, gpu_count=1, status="invalid", reason=evil, allocation=evil),
            row(hotkey=HK_B, uid=2, gpu_name="NVIDIA H100 80GB HBM3", gpu_count=8)]

    table = resource_table(rows, summary={"miners": 2, "by_status": {evil: 1},
                                          "instances": [{"gpu_name": evil, "gpu_count": 1, "instances": 1}], "gpus": []})

    lines = table.split("\n")
    assert table.splitlines() == lines
    assert len(lines) == 3 + 9
    bad = [char for line in lines for char in line if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Mn", "Me")]
    assert bad == []
    gpu_name = lines[1][lines[0].index("GPU"):].split("  ")[0]
    assert gpu_name.startswith("NVIDIA") and "  " not in gpu_name
    starts = set(line.index("available") if "available" in line else line.index("invalid") for line in lines[1:3])
    assert len(starts) == 1 and lines[0].index("STATUS") in starts


def test_wide_characters_count_as_two_columns():
    rows = [row(hotkey=HK_A, uid=1, gpu_name="显卡 H100", gpu_count=8),
            row(hotkey=HK_B, uid=2, gpu_name="NVIDIA H100 80GB HBM3", gpu_count=8)]

    lines = resource_table(rows, columns=["uid", "gpu_name", "gpu_count", "status"]).split("\n")

    assert_aligned(lines, [["UID", "GPU", "N", "STATUS"], ["1", "显卡 H100", "8", "available"],
                           ["2", "NVIDIA H100 80GB HBM3", "8", "available"]])


def test_an_endless_value_is_cut_so_the_table_stays_readable():
    rows = [row(hotkey=HK_A, uid=1, gpu_name="G" * 5000, status="invalid", reason="R" * 5000),
            row(hotkey=HK_B, uid=2, gpu_name="NVIDIA H100 80GB HBM3")]

    lines = resource_table(rows).split("\n")

    assert "G" * 37 + "..." in lines[1] and "G" * 40 not in lines[1]
    assert lines[1].endswith("R" * 197 + "...")
    assert lines[0].index(" GB ") + 1 - lines[0].index("GPU") == 40 + 2
    assert len(lines[2].rstrip()) < 200


def test_miner_text_is_printed_and_never_evaluated():
    rows = [row(hotkey=HK_A, uid=1, gpu_name="{{ 7 * 6 }}", reason="{% raw %}x{% endraw %}", status="invalid")]

    table = resource_table(rows)

    assert "{{ 7 * 6 }}" in table and "{% raw %}x{% endraw %}" in table
    assert "42" not in table


def test_non_text_values_are_printed_as_text():
    rows = [row(hotkey=HK_A, uid="seven", gpu_name={"name": "x"}, gpu_count=True, reserved_by="5Single")]

    line = resource_table(rows).split("\n")[1]

    assert "seven" in line and "{'name': 'x'}" in line and "True" in line and "reserved by 5Single" in line


def test_columns_chooses_which_columns_print_and_in_which_order():
    lines = resource_table(four_rows(), columns=["status", "uid", "gpu_memory_mib", "incentive"]).split("\n")

    assert_aligned(lines, [
        ["STATUS", "UID", "MIB", "INCENTIVE"],
        ["available", "3", "81559", "0.0123"],
        ["allocated", "17", "24564", "-"],
        ["reserved", "42", "-", "-"],
        ["invalid", "101", "-", "-"],
    ])


def test_columns_accepts_a_comma_separated_string():
    assert resource_table(four_rows(), columns="uid, status").split("\n")[0] == "UID  STATUS"


@pytest.mark.parametrize("columns, message", [
    (["uid", "gpu"], r"unknown column\(s\) 'gpu'; known columns: uid, hotkey"),
    (["uid", "uid"], r"more than once: uid"),
    ([], r"non-empty list"),
    (7, r"non-empty list of column names, got int"),
])
def test_bad_columns_are_refused(columns, message):
    with pytest.raises(AnsibleFilterError, match=message):
        resource_table(four_rows(), columns=columns)


@pytest.mark.parametrize("rows, message", [
    ({"resources": [], "summary": {}}, r"got a dict \(pass result.resources, not the whole result\)"),
    ("5F3sa2", r"expects a list of resource rows, got str"),
    (None, r"expects a list of resource rows, got null"),
    (42, r"got int"),
    ([row(uid=1), "5F3sa2"], r"row 1 is str, not a dict"),
    ([None], r"row 0 is null, not a dict"),
])
def test_input_that_is_not_a_list_of_rows_is_refused(rows, message):
    with pytest.raises(AnsibleFilterError, match=message):
        resource_table(rows)


@pytest.mark.parametrize("summary, message", [
    ([1, 2], r"summary must be a dict"),
    ({"miners": 1, "by_status": [1]}, r"summary.by_status must be a dict, got list"),
    ({"miners": 1, "instances": {"a": 1}}, r"summary.instances must be a list of dicts"),
    ({"miners": 1, "gpus": ["H100"]}, r"summary.gpus must be a list of dicts"),
])
def test_a_malformed_summary_is_refused(summary, message):
    with pytest.raises(AnsibleFilterError, match=message):
        resource_table(four_rows(), summary=summary)


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"resource_table": resource_table}
