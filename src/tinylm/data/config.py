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
    split: Literal["standard", "nanogpt"] = "standard"
    """standard: the dataset's train, valid and test (80/10/10 by position for one text); nanogpt: nanoGPT's
    protocol, train on the first 90 % and valid and test both the last 10 %. Selecting on the text it is scored on,
    it reproduces nanoGPT's numbers and is never a headline result."""

    def __post_init__(self) -> None:
        if self.max_vocab is not None and self.max_vocab < 2:
            raise UsageError(f"data.max_vocab must be at least 2 (got {self.max_vocab})")
        if self.split not in ("standard", "nanogpt"):
            raise UsageError(f"data.split must be standard or nanogpt (got {self.split!r})")

    @classmethod
    def text(cls, path: str | Path, level: Literal["char", "word"] | None) -> DataConfig:
        """The data section for a user's text file or folder, labelled by its name."""
        resolved = Path(path).resolve()
        return cls(name=resolved.stem or "text", level=level, path=str(resolved))

    @property
    def label(self) -> str:
        """The name runs and reports use: the dataset, marked with its split if not the standard one
        (tinyshakespeare-nanogpt) and its vocabulary cap (wikitext2-10k) if capped."""
        name = self.name if self.split == "standard" else f"{self.name}-{self.split}"
        if self.max_vocab is None or self.path is not None:
            return name
        cap = f"{self.max_vocab // 1000}k" if self.max_vocab % 1000 == 0 else f"v{self.max_vocab}"
        return f"{name}-{cap}"

    @property
    def reproduction(self) -> bool:
        """True for a split that selects on its own evaluation text (nanogpt): never in a headline."""
        return self.split != "standard"
