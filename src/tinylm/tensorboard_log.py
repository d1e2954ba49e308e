"""TensorBoard scalars and text of a run (`--log tensorboard`), written beside history.jsonl, which stays the record.

Uses torch.utils.tensorboard (the optional extra `tensorboard`). Files go to <run dir>/tensorboard; a resumed run
purges the events logged after its checkpoint, so a redone step is not drawn twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinylm.errors import UsageError
from tinylm.run_metrics import RunMetrics

LOGGERS = ("tensorboard",)
INSTALL = 'pip install -e ".[tensorboard]"'


def check_logs(logs: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The loggers asked for, checked: known names whose packages are installed."""
    logs = tuple(dict.fromkeys(logs or ()))
    for name in logs:
        if name not in LOGGERS:
            raise UsageError(f"unknown logger '{name}'; choose from: {', '.join(LOGGERS)}")
    if "tensorboard" in logs:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UsageError(f"--log tensorboard needs the tensorboard package: {INSTALL}") from None
    return logs


class TensorBoardLog:
    """Scalars per evaluation (train/valid loss, learning rate, tokens/s, FLOPs), the train loss every few steps,
    the final scores and the samples as text."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(str(self.dir), purge_step=purge_step)

    def step(self, step: int, loss: float, tokens_per_second: float) -> None:
        """The training loss and speed at a step."""
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("speed/tokens_per_second", tokens_per_second, step)

    def row(self, row: dict[str, Any]) -> None:
        """One history row (a periodic evaluation)."""
        step = row["step"]
        names = {"valid_loss": "valid/loss", "train_loss": "train/loss_mean", "lr": "train/learning_rate",
                 "flops": "compute/flops", "tokens": "compute/tokens"}
        for key, tag in names.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], step)
        if row.get("seconds"):
            self.writer.add_scalar("speed/tokens_per_second_mean", row["tokens"] / row["seconds"], step)
        self.writer.flush()

    def finish(self, step: int, metrics: RunMetrics, samples: str | None) -> None:
        """Final full-split scores and the sample text."""
        final = {"valid_loss": metrics.valid_loss, "test_loss": metrics.test_loss, "test_loglik": metrics.test_loglik,
                 "test_perplexity": metrics.test_perplexity}
        for key, value in final.items():
            if value is not None:
                self.writer.add_scalar(f"final/{key}", value, step)
        if samples is not None:
            self.writer.add_text("samples", "    " + samples.replace("\n", "\n    "), step)  # markdown: verbatim
        self.close()

    def close(self) -> None:
        self.writer.close()
