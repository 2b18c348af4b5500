"""`cvos.compare`: sweep folders (and W&B runs) -> table, CSV and plot, failed runs included."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cvos.compare import main
from cvos.errors import ConfigError, DataError
from cvos.reporting import RunRecord, Scores, compare, markdown_table, read_sweep, read_wandb
from cvos.reporting.runs import NO_METRICS

REPO = Path(__file__).resolve().parents[1]
CSV_COLUMNS = ["run", "model", "J&F", "J", "F", "fps", "I ms", "P ms", "params", "status", "error"]
OK_JOBS = {  # model -> (J&F, fps, params)
    "warp": (0.612, 95.0, 1_234_567),
    "rsm_sam": (0.781, 41.5, 2_345_678),
    "framewise": (0.802, 8.2, 3_456_789),
}
FAILED_ERROR = "ValueError: topk=0 must be >= 1"


def write_job(sweep: Path, num: int, overrides: list[str], metrics: dict[str, Any] | None) -> None:
    """A job folder as `python -m cvos.train -m` leaves it; metrics=None: the job was killed."""
    hydra_dir = sweep / str(num) / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    (hydra_dir / "config.yaml").write_text("seed: 0\n")
    (hydra_dir / "hydra.yaml").write_text("hydra: {}\n")
    if metrics is not None:
        (sweep / str(num) / "metrics.json").write_text(json.dumps(metrics))


def ok_metrics(jf: float, fps: float, params: int) -> dict[str, Any]:
    return {
        "status": "ok",
        "J&F": jf,
        "J": jf + 0.01,
        "F": jf - 0.01,
        "copy_baseline_J&F": 0.4,
        "fps": fps,
        "ms_per_iframe": 1000 / fps * 3,
        "ms_per_pframe": 1000 / fps / 2,
        "params": params,
        "checkpoint": "last.ckpt",
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three ok jobs differing by model, one failed with an error, one killed (no metrics.json)."""
    sweep = tmp_path / "2024-05-01_12-00-00"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    constant = ["experiment=ablation_modules", "data.gop_size=12"]
    for num, (model, (jf, fps, params)) in enumerate(OK_JOBS.items()):
        write_job(sweep, num, [f"model={model}", *constant], ok_metrics(jf, fps, params))
    write_job(sweep, 3, ["model=sam", *constant], {"status": "failed", "error": FAILED_ERROR})
    write_job(sweep, 4, ["model=mask_warp", *constant], None)
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def check_png(path: Path) -> None:
    """A real, readable PNG with something drawn on it."""
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 5.0  # not a blank canvas
    assert (pixels < 128).mean() > 0.005  # dark text, markers and axes


def test_read_sweep_reports_every_job_with_its_outcome(sweep: Path) -> None:
    runs = read_sweep(sweep)
    assert [run.name for run in runs] == [f"{sweep.name}/{num}" for num in range(5)]
    assert [run.status for run in runs] == ["ok", "ok", "ok", "failed", "failed"]
    assert runs[1].overrides == {
        "model": "rsm_sam",
        "experiment": "ablation_modules",
        "data.gop_size": "12",
    }
    expected = Scores(jf=0.781, j=0.791, f=0.771, fps=41.5, params=2_345_678)
    assert runs[1].scores == replace(expected, iframe_ms=3000 / 41.5, pframe_ms=500 / 41.5)
    assert runs[3].error == FAILED_ERROR
    assert runs[4].error == NO_METRICS


def test_compare_ranks_by_jf_with_failed_runs_last(sweep: Path) -> None:
    comparison = compare(read_sweep(sweep))
    models = [run.overrides["model"] for run in comparison.runs]
    assert models == ["framewise", "rsm_sam", "warp", "sam", "mask_warp"]
    assert comparison.keys == ["model"]
    assert comparison.label(comparison.runs[0]) == "model=framewise"


def test_cli_writes_markdown_csv_and_png(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| run | model | J&F |" in printed
    assert str(out / "comparison.png") in printed

    rows = read_csv(out / "comparison.csv")
    assert list(rows[0]) == CSV_COLUMNS  # constant keys (experiment, data.gop_size) left out
    assert len(rows) == 5
    assert [row["model"] for row in rows] == ["framewise", "rsm_sam", "warp", "sam", "mask_warp"]
    assert float(rows[0]["J&F"]) == pytest.approx(0.802)
    assert float(rows[2]["fps"]) == pytest.approx(95.0)
    assert int(rows[1]["params"]) == 2_345_678
    assert float(rows[2]["I ms"]) == pytest.approx(3000 / 95.0)
    assert float(rows[2]["P ms"]) == pytest.approx(500 / 95.0)
    assert [(row["status"], row["error"]) for row in rows[3:]] == [
        ("failed", FAILED_ERROR),
        ("failed", NO_METRICS),
    ]
    assert rows[3]["J&F"] == ""

    markdown = (out / "comparison.md").read_text()
    table_rows = [line for line in markdown.splitlines() if line.startswith(f"| {sweep.name}/")]
    assert len(table_rows) == 5
    assert "| 0.802 | 0.812 | 0.792 | 8.2 | 365.9 | 61.0 | 3,456,789 | ok |" in table_rows[0]
    assert FAILED_ERROR in table_rows[3] and NO_METRICS in table_rows[4]
    assert "experiment" not in markdown and "data.gop_size" not in markdown
    assert "2 failed run(s)" in markdown
    check_png(out / "comparison.png")


def test_several_sweeps_and_no_differing_override(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_job(first, 0, ["model=rsm"], ok_metrics(0.7, 50.0, 1000))
    write_job(second, 0, ["model=rsm"], ok_metrics(0.6, 60.0, 1000))
    main([str(first), str(second), "--out", str(tmp_path / "out")])
    rows = read_csv(tmp_path / "out" / "comparison.csv")
    assert [row["run"] for row in rows] == ["a/0", "b/0"]
    assert [row["overrides"] for row in rows] == ["model=rsm", "model=rsm"]
    assert "model" not in rows[0]
    check_png(tmp_path / "out" / "comparison.png")


def test_markdown_escapes_pipes_and_newlines_in_errors() -> None:
    run = RunRecord("s/0", {"model": "rsm"}, None, "KeyError: 'a|b'\nmore")
    line = markdown_table(compare([run])).splitlines()[-1]
    assert line.endswith("| failed | KeyError: 'a\\|b' more |")


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_sweep_path_is_a_data_error_naming_it(tmp_path: Path, make: str) -> None:
    path = tmp_path / "sweep"
    if make == "empty":
        path.mkdir()
        (path / "multirun.yaml").write_text("hydra: {}\n")
    elif make == "file":
        path.write_text("not a folder")
    with pytest.raises(DataError, match=str(path)):
        read_sweep(path)


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_sweep"
    result = subprocess.run(
        [sys.executable, "-m", "cvos.compare", str(missing), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and str(missing) in result.stderr
    assert not (tmp_path / "out").exists()


def test_garbled_overrides_is_a_data_error(tmp_path: Path) -> None:
    write_job(tmp_path / "s", 0, ["model=rsm"], None)
    overrides = tmp_path / "s" / "0" / ".hydra" / "overrides.yaml"
    overrides.write_text("model: rsm\n")
    with pytest.raises(DataError, match="overrides.yaml"):
        read_sweep(tmp_path / "s")


def test_truncated_metrics_is_a_failed_run(tmp_path: Path) -> None:
    write_job(tmp_path / "s", 0, ["model=rsm"], None)
    (tmp_path / "s" / "0" / "metrics.json").write_text('{"status": "ok", "J&F": 0.')
    (run,) = read_sweep(tmp_path / "s")
    assert run.status == "failed" and "unreadable metrics.json" in run.error


class FakeApi:
    """Stands in for `wandb.Api`: returns fixed runs and records the query."""

    def __init__(self, runs: list[SimpleNamespace]) -> None:
        self._runs = runs
        self.queries: list[tuple[str, dict[str, Any] | None]] = []

    def runs(self, path: str, filters: dict[str, Any] | None = None) -> list[SimpleNamespace]:
        self.queries.append((path, filters))
        return self._runs


def wandb_run(name: str, state: str, variant: str, summary: dict[str, Any]) -> SimpleNamespace:
    config = {"model": {"variant": variant, "lr": 0.001}, "data": {"gop_size": 12}}
    return SimpleNamespace(name=name, state=state, config=config, summary=summary)


def test_read_wandb_maps_summary_and_state(tmp_path: Path) -> None:
    final = {"final/J&F": 0.75, "final/J": 0.76, "final/F": 0.74, "final/fps": 40.0}
    api = FakeApi(
        [
            wandb_run("rsm-0", "finished", "rsm", {**final, "final/params": 1234}),
            wandb_run("sam-1", "crashed", "sam", {}),
            wandb_run("warp-2", "finished", "warp", {"epoch": 3}),  # failed job: no final/ scores
        ]
    )
    runs = read_wandb(api, "team/cvos", group="ablation")
    assert api.queries == [("team/cvos", {"group": "ablation"})]
    assert runs[0].scores == Scores(jf=0.75, j=0.76, f=0.74, fps=40.0, params=1234)
    assert [run.status for run in runs] == ["ok", "failed", "failed"]
    assert "crashed" in runs[1].error
    assert "final/J&F" in runs[2].error
    comparison = compare(runs)
    assert comparison.keys == ["model.variant"]
    assert comparison.label(comparison.runs[0]) == "model.variant=rsm"


def test_read_wandb_without_runs_is_a_data_error() -> None:
    with pytest.raises(DataError, match="team/cvos: no runs in group g"):
        read_wandb(FakeApi([]), "team/cvos", group="g")


def test_wandb_without_key_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        main.__wrapped__(["--wandb", "team/cvos", "--out", str(tmp_path)])
