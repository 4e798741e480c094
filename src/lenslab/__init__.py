"""lenslab: a workbench for measuring what happens inside transformers.

The public API. Everything the CLI does is reachable from here::

    import lenslab
    cfg = lenslab.example_config("induction")
    result = lenslab.train(cfg, "runs/demo")
"""

__version__ = "0.1.0"

from lenslab.config import RunConfig, load_config  # noqa: E402
from lenslab.errors import LensError  # noqa: E402
from lenslab.examples import example_config  # noqa: E402
from lenslab.models import GPT, LSTM, build_model  # noqa: E402
from lenslab.runs import RunInfo, list_runs, load_run  # noqa: E402
from lenslab.training import Trainer, TrainResult, resume, train  # noqa: E402

__all__ = [
    "__version__", "RunConfig", "load_config", "LensError", "example_config", "GPT", "LSTM",
    "build_model", "Trainer", "TrainResult", "train", "resume", "RunInfo", "list_runs", "load_run",
]
