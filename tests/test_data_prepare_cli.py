"""`conf/data/*` and `python -m cvos.prepare`: configs compose and instantiate; the CLI runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from jobs import compose_job, run_module

from cvos.data import VOSData
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
    assert "train: 2 sequences prepared (2 encoded now)" in printed.out
    assert "val: 1 sequences prepared (1 encoded now)" in printed.out
    assert "prepare synthetic" in printed.err  # the progress bar
    prepare(compose_job("prepare", overrides, tmp_path / "run"))
    assert "train: 2 sequences prepared (0 encoded now)" in capsys.readouterr().out
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"data.cache_dir={tmp_path}", *TINY])
    module = instantiate(cfg.data, _convert_="all")
    assert sorted(p.name for p in module.prepared_dir.iterdir()) == [
        "train-000",
        "train-001",
        "val-000",
    ]


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
