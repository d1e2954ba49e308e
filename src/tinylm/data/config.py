"""Which text a model learns from: the data section of a run config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinylm.errors import UsageError


@dataclass
class DataConfig:
    """Which text a model learns from."""

    name: str = "tinyshakespeare"
    """A registered dataset (tinyshakespeare, ptb, wikitext2) or a label for a user file."""
    level: Literal["char", "word"] | None = None
    """Tokenization level; required for a user file, fixed for registered datasets."""
    path: str | None = None
    """A user text file (split 80/10/10) or a folder with train.txt, valid.txt and test.txt."""
    max_vocab: int | None = None
    """Cap the word vocabulary (the rest maps to <unk>); None keeps the standard full vocabulary."""

    def __post_init__(self) -> None:
        if self.max_vocab is not None and self.max_vocab < 2:
            raise UsageError(f"data.max_vocab must be at least 2 (got {self.max_vocab})")

    @classmethod
    def text(cls, path: str | Path, level: Literal["char", "word"] | None) -> DataConfig:
        """The data section for a user's text file or folder, labelled by its name."""
        resolved = Path(path).resolve()
        return cls(name=resolved.stem or "text", level=level, path=str(resolved))

    @property
    def label(self) -> str:
        """The name runs and reports use: the dataset, marked with its vocabulary cap (wikitext2-10k) if capped."""
        if self.max_vocab is None or self.path is not None:
            return self.name
        cap = f"{self.max_vocab // 1000}k" if self.max_vocab % 1000 == 0 else f"v{self.max_vocab}"
        return f"{self.name}-{cap}"
