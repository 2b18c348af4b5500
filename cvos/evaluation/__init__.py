"""Run a network over data and write what it gives: a dataset split scored against its
ground truth (`evaluate_split`), or one video segmented from a first mask (`segment_video`)."""

from cvos.evaluation.settings import load_network, run_record, with_overrides
from cvos.evaluation.split import evaluate_split, summary_line, write_reports
from cvos.evaluation.video import segment_video

__all__ = [
    "evaluate_split",
    "load_network",
    "run_record",
    "segment_video",
    "summary_line",
    "with_overrides",
    "write_reports",
]
