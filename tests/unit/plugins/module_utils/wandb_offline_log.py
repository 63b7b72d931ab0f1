# -*- coding: utf-8 -*-
# Test helper: read the config a wandb offline run recorded, from its transaction log
# (run-<id>.wandb: a 7-byte ":W&B" header, then LevelDB-log framed protobuf Records).

from __future__ import annotations

import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7
_FULL, _LAST = 1, 4


def _records(raw):
    position, pending = _HEADER, b""
    while position + _HEADER <= len(raw):
        room = _BLOCK - position % _BLOCK
        if room < _HEADER:
            position += room
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[position:position + _HEADER])
        position += _HEADER
        pending += raw[position:position + length]
        position += length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_run_config(wandb_dir, run_id):
    """The run's config as last written, merged from its run and config records."""
    paths = glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*-%s" % run_id, "run-%s.wandb" % run_id))
    if not paths:
        raise AssertionError("no offline run %s under %s" % (run_id, wandb_dir))
    with open(paths[0], "rb") as handle:
        raw = handle.read()
    config = {}
    for record in _records(raw):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in items:
            config[item.key] = json.loads(item.value_json)
    return config
