"""Hold out DAVIS-2016 train sequences: a dataset view whose `train` split leaves some out.

    python scripts/holdout_split.py --root ../shared/data/davis2016 --out .cache/davis16-holdout

writes `<out>/ImageSets/480p/{train,holdout,val}.txt` and links `<out>/JPEGImages` and
`<out>/Annotations` to the real folders: `train` is the official train split without every
`--every`-th sequence (sorted by name, starting with the first), `holdout` those, `val` the
official val split. Train on it with `data.root=<out>` and score the held-out sequences with
`python -m cvos.evaluate ... data.root=<out> split=holdout`: an estimate of how a recipe
generalises that never looks at the val sequences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESOLUTION = "480p"


def split_lines(root: Path, split: str) -> dict[str, list[str]]:
    """Lines of an official split file, grouped by sequence, in file order."""
    groups: dict[str, list[str]] = {}
    for line in (root / "ImageSets" / RESOLUTION / f"{split}.txt").read_text().splitlines():
        if line.strip():
            groups.setdefault(Path(line.split()[0]).parent.name, []).append(line)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the DAVIS 2016 folder")
    parser.add_argument("--out", type=Path, required=True, help="where to write the view")
    parser.add_argument("--every", type=int, default=5, help="hold out every n-th sequence")
    args = parser.parse_args()
    train = split_lines(args.root, "train")
    names = sorted(train)
    held = set(names[:: args.every])
    splits = {
        "train": [line for name in names if name not in held for line in train[name]],
        "holdout": [line for name in names if name in held for line in train[name]],
        "val": [line for lines in split_lines(args.root, "val").values() for line in lines],
    }
    (args.out / "ImageSets" / RESOLUTION).mkdir(parents=True, exist_ok=True)
    for folder in ("JPEGImages", "Annotations"):
        link = args.out / folder
        if not link.exists():
            link.symlink_to((args.root / folder).resolve())
    for split, lines in splits.items():
        (args.out / "ImageSets" / RESOLUTION / f"{split}.txt").write_text("\n".join(lines) + "\n")
    print(f"{args.out}: train {len(names) - len(held)} sequences, holdout {sorted(held)}")


if __name__ == "__main__":
    main()
