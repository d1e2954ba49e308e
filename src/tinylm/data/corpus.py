"""Token arrays per split, cached on disk, and the random training batches cut from them.

A corpus is three 1-D integer arrays (train, valid, test). Training batches are B random windows of the train
array, gathered with one indexing operation:

    tokens:  t0 t1 t2 t3 t4 t5 t6 t7 t8 ...
    start s ──┘
    x = tokens[s : s+L]       (inputs)
    y = tokens[s+1 : s+L+1]   (targets, shifted by one)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinylm.data import sources
from tinylm.data.config import DataConfig
from tinylm.data.tokenizers import CharTokenizer, Tokenizer, WordTokenizer, tokenizer_from_json
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError
from tinylm.io import atomic_write

CACHE_VERSION = 1


@dataclass
class Corpus:
    """A tokenizer and the token ids of each split."""

    name: str
    tokenizer: Tokenizer
    splits: dict[str, np.ndarray]
    origins: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False

    def tensor(self, split: str) -> torch.Tensor:
        """The ids of a split as a LongTensor (shares memory where possible)."""
        return torch.from_numpy(self.splits[split].astype(np.int64, copy=False))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TinyLMError(f"{path} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    except OSError as e:
        raise TinyLMError(f"cannot read {path}: {e.strerror}") from None


def split_text(text: str, level: str) -> dict[str, str]:
    """Split one text 80/10/10 by character index (word level: moved forward to the next line break)."""
    n = len(text)
    cuts = [int(0.8 * n), int(0.9 * n)]
    if level == "word":
        cuts = [min(n, text.find("\n", c) + 1) if text.find("\n", c) >= 0 else c for c in cuts]
    return {"train": text[: cuts[0]], "valid": text[cuts[0] : cuts[1]], "test": text[cuts[1] :]}


def _user_texts(cfg: DataConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Texts of a user file (split 80/10/10) or folder (train.txt, valid.txt, test.txt)."""
    if cfg.level is None:
        raise UsageError("a user text file needs --level char or --level word")
    path = Path(cfg.path)
    if path.is_dir():
        files = {s: path / f"{s}.txt" for s in sources.SPLITS}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise UsageError(f"data folder {path} lacks {', '.join(missing)}; give train.txt, valid.txt and test.txt")
        texts = {s: _read_text(p) for s, p in files.items()}
        return texts, {s: str(p) for s, p in files.items()}
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist; pass an existing text file with --data")
    text = _read_text(path)
    if not text.strip():
        raise TinyLMError(f"data file {path} is empty; give a text file with some content")
    return split_text(text, cfg.level), {s: str(path) for s in sources.SPLITS}


def _registered_texts(cfg: DataConfig, root: Path | None, mirror: Path | None, quiet: bool):
    spec = sources.DATASETS[cfg.name]
    fetched = sources.fetch_dataset(cfg.name, root, mirror, quiet)
    origins = {s: origin for s, (_, origin) in fetched.items()}
    if spec.split_by_index:
        path, origin = fetched["all"]
        texts = split_text(_read_text(path), "char")
        return texts, {s: origin for s in sources.SPLITS}
    return {s: _read_text(fetched[s][0]) for s in sources.SPLITS}, origins


def _cache_key(cfg: DataConfig, digests: list[str], level: str) -> str:
    payload = json.dumps(
        {"v": CACHE_VERSION, "name": cfg.name, "level": level, "max_vocab": cfg.max_vocab, "src": digests},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _source_digests(cfg: DataConfig) -> list[str]:
    if cfg.path is None:
        return [r.sha256 for r in sources.DATASETS[cfg.name].files.values()]
    path = Path(cfg.path)
    files = [path / f"{s}.txt" for s in sources.SPLITS] if path.is_dir() else [path]
    return [sources.sha256_file(p) if p.is_file() else "missing" for p in files]


def resolve_data_config(cfg: DataConfig) -> DataConfig:
    """Canonical name and level for registered datasets; checks for user files."""
    if cfg.path is None:
        name = sources.canonical_name(cfg.name)
        spec = sources.DATASETS[name]
        if cfg.level is not None and cfg.level != spec.level:
            raise UsageError(f"dataset {name} is {spec.level}-level; drop --level or set it to {spec.level}")
        if spec.level == "char" and cfg.max_vocab is not None:
            raise UsageError(f"data.max_vocab applies to word-level data only, not to {name}")
        return DataConfig(name=name, level=spec.level, path=None, max_vocab=cfg.max_vocab)
    problems = []
    path = Path(cfg.path)
    if path.is_dir():
        missing = [f"{s}.txt" for s in sources.SPLITS if not (path / f"{s}.txt").is_file()]
        if missing:
            problems.append(f"data folder {path} lacks {', '.join(missing)} (give train.txt, valid.txt and test.txt, "
                            "or one text file to split 80/10/10)")
    elif not path.is_file():
        problems.append(f"data file {path} does not exist (pass an existing text file with --data)")
    if cfg.level is None:
        problems.append("a user text needs --level char or --level word")
    if problems:
        raise UsageError("; ".join(problems))
    return cfg


def load_corpus(
    cfg: DataConfig,
    root: str | Path | None = None,
    mirror: str | Path | None = None,
    quiet: bool = False,
    use_cache: bool = True,
) -> Corpus:
    """Fetch, verify and tokenize a dataset, reusing the on-disk cache when its key matches.

    The cache key covers the source digests, level, vocabulary cap and cache format; anything else is rebuilt.
    """
    cfg = resolve_data_config(cfg)
    root_path = sources.data_dir(root)
    mirror_path = sources.mirror_dir(mirror)
    level = cfg.level
    if cfg.path is None:
        # Verifies (or fetches) the files; cheap when they are already in the data directory.
        texts, origins = _registered_texts(cfg, root_path, mirror_path, quiet)
    else:
        texts, origins = None, {}
    key = _cache_key(cfg, _source_digests(cfg), level)
    cache = root_path / "cache" / f"{cfg.name}-{key}"
    if use_cache and (cache / "tokens.npz").is_file() and (cache / "tokenizer.json").is_file():
        try:
            with np.load(cache / "tokens.npz", allow_pickle=False) as npz:
                splits = {s: npz[s] for s in sources.SPLITS}
            tok = tokenizer_from_json(json.loads((cache / "tokenizer.json").read_text(encoding="utf-8")))
            return Corpus(cfg.name, tok, splits, origins or {"all": str(cfg.path)}, from_cache=True)
        except (OSError, ValueError, KeyError, TinyLMError):
            pass  # a damaged cache is rebuilt below
    if texts is None:
        texts, origins = _user_texts(cfg)
    if level == "char":
        tok: Tokenizer = CharTokenizer.build(texts["train"], [texts["valid"], texts["test"]])
    else:
        tok = WordTokenizer.build(texts["train"], cfg.max_vocab)
    splits = {s: tok.encode(t).astype(np.int32) for s, t in texts.items()}
    for s, ids in splits.items():
        if len(ids) < 2:
            raise TinyLMError(
                f"the {s} split of {cfg.path or cfg.name} has {len(ids)} tokens; the text is too short to split "
                "80/10/10 — give a longer file"
            )
    if use_cache:
        _write_cache(cache, splits, tok)
    return Corpus(cfg.name, tok, splits, origins)


def _write_cache(cache: Path, splits: dict[str, np.ndarray], tok: Tokenizer) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **splits)

    try:
        atomic_write(cache / "tokens.npz", write)
        tok.save(cache / "tokenizer.json")
    except OSError as e:  # the cache is an optimisation: a full or read-only data directory still works
        warnings.warn(f"could not cache the tokenized data in {cache} ({e.strerror}); continuing without the cache, "
                      "so the next run tokenizes again", TinyLMWarning, stacklevel=2)


def sample_batch(
    tokens: torch.Tensor, batch_size: int, length: int, generator: torch.Generator,
    rows: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of `length` inputs and their next-token targets, as (B, L) LongTensors; with `rows`
    (lo, hi), only windows lo..hi-1 of those B (a data-parallel rank's slice: the generator advances the same)."""
    starts = torch.randint(0, len(tokens) - length, (batch_size,), generator=generator)  # (B,)
    if rows is not None:
        starts = starts[rows[0] : rows[1]]
    idx = starts[:, None] + torch.arange(length + 1)  # (B, L+1)
    window = tokens[idx]  # (B, L+1)
    return window[:, :-1], window[:, 1:]
