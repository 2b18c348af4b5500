"""What the entry points share: user errors as one line, Hydra jobs, and the run loggers.

Only the entry points (`cvos/<name>.py`, `python -m cvos.<name>`) import this package; library
code below takes plain arguments and never sees a Hydra config.
"""

from cvos.cli.errors import friendly_errors, run_job
from cvos.cli.jobs import instantiate, job_context
from cvos.cli.loggers import build_loggers, finish_loggers

__all__ = [
    "build_loggers",
    "finish_loggers",
    "friendly_errors",
    "instantiate",
    "job_context",
    "run_job",
]
