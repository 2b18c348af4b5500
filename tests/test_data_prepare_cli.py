"""`conf/data/*` and `python -m cvos.prepare`: configs compose and instantiate; the CLI runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from jobs import compose_job, run_module

from cvos.data import VOSData
from cvos.data.shards import Shard
from cvos.errors import ConfigError
from cvos.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.synthetic.num_train=2",
    "data.synthetic.num_val=1",
    "data.synthetic.min_frames=6",
    "data.synthetic.max_frames=6",
    "data.synthetic.height=40",
    "data.synthetic.width=72",
]


@pytest.mark.parametrize("name", ["synthetic", "davis16", "davis17", "ytvos"])
def test_every_data_config_instantiates(name: str, tmp_path: Path) -> None:
    overrides = [f"data={name}", f"data.cache_dir={tmp_path}", "data.seed=3"]
    if name != "synthetic":
        overrides.append(f"data.root={tmp_path}")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=overrides)
    module = instantiate(cfg.data, _convert_="all")
    assert isinstance(module, VOSData) and module.name == name and module.gop_size == 12
    assert module.prepared_dir.name == "mpeg4-gop12-q5"
    assert cfg.splits == [cfg.data.train_split, cfg.data.val_split]
    if name == "synthetic":
        assert module.synthetic.seed == 3  # follows data.seed
        assert module.crop_size == (112, 192)
        assert module.prepared_dir.parent.name == f"synthetic-{module.synthetic.key()}"
    else:
        assert module.synthetic is None and module.crop_size == (256, 512)
        assert module.prepared_dir.parent == tmp_path / "prepared" / name


def test_prepare_entry_point_then_rerun_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [f"data.cache_dir={tmp_path}", "workers=2", *TINY]
    prepare(compose_job("prepare", overrides, tmp_path / "run"))
    printed = capsys.readouterr()
    assert "train: 2 sequences (12 frames) prepared in" in printed.out
    assert "; 2 now: 0.000 GB written (" in printed.out and "s per 1,000 frames)" in printed.out
    assert "val: 1 sequences (6 frames) prepared in" in printed.out
    assert "prepare synthetic" in printed.err  # the progress bar
    prepare(compose_job("prepare", overrides, tmp_path / "run"))
    assert "train: 2 sequences (12 frames) prepared in" in capsys.readouterr().out
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"data.cache_dir={tmp_path}", *TINY])
    module = instantiate(cfg.data, _convert_="all")
    assert sorted(p.name for p in module.prepared_dir.iterdir()) == [
        "train-000",
        "train-001",
        "val-000",
    ]


def test_n_shards_cover_every_sequence_exactly_once(tmp_path: Path) -> None:
    names = [f"seq-{i:03d}" for i in range(23)]
    for count in (1, 3, 16, 40):
        shards = [Shard.parse(f"{k}/{count}").select(names) for k in range(count)]
        assert sorted(n for shard in shards for n in shard) == names
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert Shard.parse("3/16").select(names) == ["seq-003", "seq-019"]
    for bad in ("16/16", "-1/4", "a/b", "3"):
        with pytest.raises(ConfigError, match=f"shard={bad}: expected k/n"):
            Shard.parse(bad)


def test_shards_prepare_disjoint_folders_that_together_are_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    overrides = [f"data.cache_dir={cache}", "workers=1", *TINY, "data.synthetic.num_train=5"]
    prepared = []
    for k in range(3):
        before = set(_folders(cache))
        prepare(compose_job("prepare", [*overrides, f"shard={k}/3"], tmp_path / f"run{k}"))
        prepared.append(set(_folders(cache)) - before)
        assert f"train (shard {k}/3):" in capsys.readouterr().out
    assert all(not a & b for a in prepared for b in prepared if a is not b)
    assert set().union(*prepared) == {f"train-00{i}" for i in range(5)} | {"val-000"}
    prepare(compose_job("prepare", [*overrides, "shard=1/3"], tmp_path / "again"))
    assert "; 0 now" in capsys.readouterr().out  # idempotent


def _folders(cache: Path) -> list[str]:
    return [p.name for p in cache.glob("prepared/*/*/*") if p.is_dir()]


def test_dry_run_lists_and_projects_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    overrides = [f"data.cache_dir={cache}", *TINY]
    prepare(compose_job("prepare", [*overrides, "dry_run=true"], tmp_path / "run"))
    out = capsys.readouterr().out
    assert "train: 2 sequences, 12 frames; 2 to prepare (12 frames)" in out
    assert "train-001" in out and "6 frames  to prepare" in out
    assert "measured on 18 frames of 3 sequences:" in out and "KB and" in out
    assert "projected: 0.000 GB for 18 frames in" in out and "dry run: nothing written" in out
    assert not (cache / "prepared").exists()  # the generated dataset is all there is
    prepare(compose_job("prepare", overrides, tmp_path / "run"))
    prepare(compose_job("prepare", [*overrides, "dry_run=true"], tmp_path / "run"))
    assert "0 to prepare (0 frames)" in capsys.readouterr().out


def test_prepare_reports_user_errors_in_one_line(tmp_path: Path) -> None:
    missing = run_module(
        "cvos.prepare", "data=davis16", f"data.root={tmp_path / 'nowhere'}",
        f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"error: data.root={tmp_path / 'nowhere'}: no such folder; "
        "set data.root to the davis16 dataset"
    )
