"""Deterministic shards of a split, so that independent jobs prepare a dataset together.

`shard=3/16` takes every 16th sequence of each split starting at the fourth (index 3 of 0..15):
shards are disjoint, together they hold every sequence once, and each sequence has its own
folder, so no two shards ever write the same place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from cvos.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """`"k/n"` -> Shard(k, n); None -> the whole split."""
        if text is None:
            return cls()
        index, _, count = str(text).partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if shard is None or not 0 <= shard.index < shard.count:
            raise ConfigError(
                f"shard={text}: expected k/n with 0 <= k < n (e.g. shard=3/16 for the 4th of 16)"
            )
        return shard

    def select(self, items: list[T]) -> list[T]:
        """This shard's part of `items` (in their order): items index, index + count, ..."""
        return items[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
