"""Read what an offline W&B run recorded, from its `run-<id>.wandb` file.

wandb >= 0.20 keeps an offline run's config, tags and summary only in that binary file (a
LevelDB-style log of protobuf records) and ships no Python reader, so the tests carry this one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32768
FILE_HEADER_SIZE = 7  # b":W&B", a 2-byte magic, a 1-byte version
RECORD_HEADER_SIZE = 7  # crc32, length (uint16), chunk type
FULL, LAST = 1, 4


@dataclass
class OfflineRun:
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _payloads(data: bytes) -> Iterator[bytes]:
    """The records' bytes, chunks of one record joined across block boundaries."""
    position, chunks = FILE_HEADER_SIZE, []
    while position + RECORD_HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        _, length, kind = struct.unpack("<IHB", data[position : position + RECORD_HEADER_SIZE])
        if left_in_block < RECORD_HEADER_SIZE or (kind == 0 and length == 0):
            position += left_in_block  # block padding
            continue
        start = position + RECORD_HEADER_SIZE
        chunks.append(data[start : start + length])
        position = start + length
        if kind in (FULL, LAST):
            yield b"".join(chunks)
            chunks = []


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Tags, config and summary of the offline run in `run_dir` (`offline-run-*`)."""
    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    run = OfflineRun()
    for payload in _payloads(data):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.tags = list(record.run.tags)
            run.config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
    return run
