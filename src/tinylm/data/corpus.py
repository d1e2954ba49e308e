"""Token arrays per split, cached on disk as flat memory-mapped files, and the random training batches cut from them.

A corpus is three 1-D integer arrays (train, valid, test). Tokenizing streams the text (a few MB at a time) into
flat uint16 (vocabularies up to 65,536) or uint32 files in the data directory's cache, which are then
memory-mapped (`numpy.memmap`): a corpus larger than memory is never loaded whole, and only the pages a batch
touches are read. Training batches are B random windows of the train array, gathered with one indexing operation:

    tokens:  t0 t1 t2 t3 t4 t5 t6 t7 t8 ...
    start s ──┘
    x = tokens[s : s+L]       (inputs)
    y = tokens[s+1 : s+L+1]   (targets, shifted by one)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinylm.data import sources
from tinylm.data.config import DataConfig
from tinylm.data.tokenizers import EOS, CharTokenizer, Tokenizer, WordTokenizer, tokenizer_from_json
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError
from tinylm.files import atomic_write_json
from tinylm.paths import data_dir as resolve_data_dir
from tinylm.paths import mirror_dir

CACHE_VERSION = 2
PIECE_CHARS = 1 << 20  # text is read and tokenized ~1M characters at a time (~16 MiB of buffers)


@dataclass
class Corpus:
    """A tokenizer and the token ids of each split (memory-mapped when they come from the cache)."""

    name: str
    tokenizer: Tokenizer
    splits: dict[str, np.ndarray]
    origins: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False

    def tensor(self, split: str) -> torch.Tensor:
        """The ids of a split as a LongTensor, in memory (for small splits; training and evaluation gather from
        `splits` directly)."""
        return torch.from_numpy(np.asarray(self.splits[split], dtype=np.int64))

    def train_counts(self, chunk: int = 1 << 20) -> list[int]:
        """How often every token id occurs in the training split (counted `chunk` ids at a time), also kept in the
        tokenizer (`tokenizer.counts`), so a run that saves its tokenizer saves them."""
        if self.tokenizer.counts is None:
            self.tokenizer.counts = id_counts(self.splits["train"], self.tokenizer.vocab_size, chunk).tolist()
        return self.tokenizer.counts


def id_counts(ids: np.ndarray | torch.Tensor, vocab_size: int, chunk: int = 1 << 20) -> np.ndarray:
    """How often every id in [0, vocab_size) occurs in `ids`, counted `chunk` ids at a time (a memory-mapped split
    is never copied whole)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(0, len(ids), chunk):
        counts += np.bincount(np.asarray(ids[i : i + chunk], dtype=np.int64), minlength=vocab_size)
    return counts


def gather(tokens: np.ndarray | torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tokens[idx] as a LongTensor, for ids held in a tensor or a (memory-mapped) numpy array."""
    if isinstance(tokens, torch.Tensor):
        return tokens[idx].long()
    return torch.from_numpy(np.asarray(tokens[idx.numpy()], dtype=np.int64))


def _pieces(path: Path, level: str) -> Iterator[str]:
    """The text of `path` in pieces of about PIECE_CHARS characters; word-level pieces end at a line break (but
    the last), so no word or line is cut. Newlines are read as by Path.read_text (\r\n -> \n)."""
    carry = ""
    try:
        with open(path, encoding="utf-8") as f:
            while block := f.read(PIECE_CHARS):
                block = carry + block
                cut = len(block) if level == "char" else block.rfind("\n") + 1
                carry = block[cut:]
                if cut:
                    yield block[:cut]
    except UnicodeDecodeError as e:
        raise TinyLMError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start} of a block); convert it to UTF-8") \
            from None
    except OSError as e:
        raise TinyLMError(f"cannot read {path}: {e.strerror}") from None
    if carry:
        yield carry


def _char_count(path: Path) -> int:
    return sum(len(p) for p in _pieces(path, "char"))


def _split_cuts(path: Path, level: str, split: str = "standard") -> Layout:
    """Character positions where valid and test begin: 80/10/10 of the characters, moved forward past the next
    line break at word level (the same cut as splitting the whole text in memory). With split "nanogpt", nanoGPT's
    protocol: train on the first 90 % of the characters, and valid and test both the last 10 %."""
    n = _char_count(path)
    if split == "nanogpt":
        cut = int(0.9 * n)  # nanoGPT's data[:int(n * 0.9)], data[int(n * 0.9):]
        return {"train": (0, cut), "valid": (cut, n), "test": (cut, n)}
    cuts = [int(0.8 * n), int(0.9 * n)]
    if level == "char":
        return cuts
    out, pos, it = [], 0, iter(cuts)
    c = next(it)
    for piece in _pieces(path, level):
        while c is not None and c < pos + len(piece):
            j = piece.find("\n", c - pos)
            out.append(pos + j + 1 if j >= 0 else c)
            c = next(it, None)
        pos += len(piece)
    return out + [n] * (2 - len(out))


Layout = str | list[int] | dict[str, tuple[int, int]]
"""The split a whole file holds; or the positions where its valid and test parts begin; or each split's span of
characters [start, end) (spans may overlap: nanoGPT's valid and test are the same text)."""
Source = list[tuple[Path, Layout | None]]  # None: split by position, cut points not counted yet


def with_cuts(source: Source, level: str, split: str = "standard") -> list[tuple[Path, Layout]]:
    """`source` with the cut points of every file split by position counted (one or two passes over it)."""
    return [(path, _split_cuts(path, level, split) if layout is None else layout) for path, layout in source]


def split_pieces(path: Path, level: str, layout: Layout) -> Iterator[tuple[str, str]]:
    """(split, text) pieces of one file: all of it one split, or each split's span of it (a piece of text in two
    overlapping spans is given once for each)."""
    if isinstance(layout, list):
        layout = {"train": (0, layout[0]), "valid": (layout[0], layout[1]), "test": (layout[1], sys.maxsize)}
    pos = 0
    for piece in _pieces(path, level):
        if isinstance(layout, str):
            yield layout, piece
            continue
        start, end = pos, pos + len(piece)
        for split in sources.SPLITS:
            a, b = layout[split]
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                yield split, piece[lo - start : hi - start]
        pos = end


def _stream(source: list[tuple[Path, Layout]], level: str) -> Iterator[tuple[str, str]]:
    for path, layout in source:
        yield from split_pieces(path, level, layout)


def build_tokenizer(source: list[tuple[Path, Layout]], level: str, max_vocab: int | None) -> Tokenizer:
    """The tokenizer of the training text (character set, or word counts), streamed."""
    if level == "char":
        train, other = set(), set()
        for split, text in _stream(source, level):
            (train if split == "train" else other).update(text)
        return CharTokenizer.from_chars(train, other)
    counts: Counter = Counter()
    lines = 0
    for split, text in _stream(source, level):
        if split == "train":
            counts.update(text.split())
            lines += text.count("\n")
    counts[EOS] = lines
    return WordTokenizer.from_counts(counts, max_vocab)


def _source(cfg: DataConfig, root: Path, mirror: Path | None, quiet: bool) -> tuple[Source, dict[str, str]]:
    """The files of a dataset (fetched and verified if registered) and the origin of each split."""
    if cfg.path is None:
        spec = sources.DATASETS[cfg.name]
        fetched = sources.fetch_dataset(cfg.name, root, mirror, quiet)
        if spec.split_by_index:
            path, origin = fetched["all"]
            return [(path, None)], {s: origin for s in sources.SPLITS}
        return [(fetched[s][0], s) for s in sources.SPLITS], {s: fetched[s][1] for s in sources.SPLITS}
    if cfg.level is None:
        raise UsageError("a user text file needs --level char or --level word")
    path = Path(cfg.path)
    if path.is_dir():
        files = {s: path / f"{s}.txt" for s in sources.SPLITS}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise UsageError(f"data folder {path} lacks {', '.join(missing)}; give train.txt, valid.txt and test.txt")
        return [(p, s) for s, p in files.items()], {s: str(p) for s, p in files.items()}
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist; pass an existing text file with --data")
    if path.stat().st_size < PIECE_CHARS and not "".join(_pieces(path, "char")).strip():
        raise TinyLMError(f"data file {path} is empty; give a text file with some content")
    return [(path, None)], {s: str(path) for s in sources.SPLITS}


def _cache_key(cfg: DataConfig, digests: list[str], level: str) -> str:
    payload = json.dumps(
        {"v": CACHE_VERSION, "name": cfg.name, "level": level, "max_vocab": cfg.max_vocab, "src": digests,
         **({"split": cfg.split} if cfg.split != "standard" else {})},  # (the standard split keeps its old keys)
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
        if cfg.split != "standard" and not spec.split_by_index:
            raise UsageError(f"data.split {cfg.split} cuts one text by position; {name} comes in fixed train, valid "
                             "and test files: use it with tinyshakespeare or a single text file")
        return DataConfig(name=name, level=spec.level, path=None, max_vocab=cfg.max_vocab, split=cfg.split)
    problems = []
    path = Path(cfg.path)
    if path.is_dir():
        if cfg.split != "standard":
            problems.append(f"data.split {cfg.split} cuts one text by position; {path} is a folder of split files")
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
    The splits of a cached corpus are memory-mapped; without the cache (or where it cannot be written) they are
    tokenized into memory.
    """
    cfg = resolve_data_config(cfg)
    root_path = resolve_data_dir(root)
    source, origins = _source(cfg, root_path, mirror_dir(mirror), quiet)
    cache = root_path / "cache" / f"{cfg.name}-{_cache_key(cfg, _source_digests(cfg), cfg.level)}"
    corpus = _read_cache(cache, cfg.name, origins) if use_cache else None
    if corpus is None:
        source = with_cuts(source, cfg.level, cfg.split)  # counted once for the passes below
        tok = build_tokenizer(source, cfg.level, cfg.max_vocab)
        if use_cache:
            try:
                _write_cache(cache, source, tok)
                corpus = _read_cache(cache, cfg.name, origins)
                if corpus is not None:
                    corpus.from_cache = False
            except OSError as e:  # the cache is an optimisation: a full or read-only data directory still works
                warnings.warn(f"could not cache the tokenized data in {cache} ({e.strerror}); continuing without the "
                              "cache, so the next run tokenizes again", TinyLMWarning, stacklevel=2)
        if corpus is None:
            corpus = Corpus(cfg.name, tok, _encode_in_memory(source, tok), origins)
    for s, ids in corpus.splits.items():
        if len(ids) < 2:
            raise TinyLMError(
                f"the {s} split of {cfg.path or cfg.name} has {len(ids)} tokens; the text is too short to split "
                "80/10/10 — give a longer file"
            )
    return corpus


def _encode_in_memory(source: list[tuple[Path, Layout]], tok: Tokenizer) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {s: [] for s in sources.SPLITS}
    for split, text in _stream(source, tok.level):
        parts[split].append(tok.encode(text).astype(np.int32))
    return {s: np.concatenate(p) if p else np.zeros(0, dtype=np.int32) for s, p in parts.items()}


def token_dtype(vocab_size: int) -> type:
    """uint16 for vocabularies up to 65,536 ids, else uint32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def _write_cache(cache: Path, source: list[tuple[Path, Layout]], tok: Tokenizer) -> None:
    """<split>.bin (flat ids), tokenizer.json and meta.json, written in a temporary folder renamed into place."""
    dtype = token_dtype(tok.vocab_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        counts = dict.fromkeys(sources.SPLITS, 0)
        files = {s: open(tmp / f"{s}.bin", "wb") for s in sources.SPLITS}
        try:
            for split, text in _stream(source, tok.level):
                ids = tok.encode(text).astype(dtype)
                files[split].write(ids.tobytes())
                counts[split] += len(ids)
        finally:
            for f in files.values():
                f.close()
        tok.save(tmp / "tokenizer.json")
        atomic_write_json(tmp / "meta.json", {"version": CACHE_VERSION, "dtype": np.dtype(dtype).name,
                                              "tokens": counts})
        os.chmod(tmp, 0o755)
        if cache.exists():
            shutil.rmtree(cache)  # damaged or from an interrupted build
        try:
            os.replace(tmp, cache)
        except OSError:
            if not (cache / "meta.json").is_file():  # else another process just built the same cache
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(cache: Path, name: str, origins: dict[str, str]) -> Corpus | None:
    """The cached corpus with memory-mapped splits, or None if there is none or it is damaged."""
    try:
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION:
            return None
        dtype = np.dtype(meta["dtype"])
        splits = {}
        for s in sources.SPLITS:
            n, path = int(meta["tokens"][s]), cache / f"{s}.bin"
            if path.stat().st_size != n * dtype.itemsize:
                return None
            splits[s] = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)
        tok = tokenizer_from_json(json.loads((cache / "tokenizer.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, TinyLMError):
        return None
    return Corpus(name, tok, splits, origins, from_cache=True)


def stream_batch(
    tokens: np.ndarray | torch.Tensor, batch_size: int, length: int, step: int, rows: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Step `step`'s inputs and targets, (B, L) each, when the split is read as B contiguous streams in order
    (PyTorch's word_language_model batching): stream b is the b-th of B equal slices, read `length` tokens a step from
    its start, and a pass ends when the streams have no whole window left. Also True when this step starts a pass
    (a carried state resets there). With `rows` (lo, hi), only streams lo..hi-1 (a data-parallel rank's)."""
    stream = (len(tokens) - 1) // batch_size
    windows = stream // length  # per pass; >= 1 is checked by the trainer's plan
    j = step % windows
    x, y = _pairs(tokens, torch.arange(batch_size) * stream + j * length, length, rows)
    return x, y, j == 0


def sample_batch(
    tokens: np.ndarray | torch.Tensor, batch_size: int, length: int, generator: torch.Generator,
    rows: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of `length` inputs and their next-token targets, as (B, L) LongTensors; with `rows`
    (lo, hi), only windows lo..hi-1 of those B (a data-parallel rank's slice: the generator advances the same)."""
    starts = torch.randint(0, len(tokens) - length, (batch_size,), generator=generator)  # (B,)
    return _pairs(tokens, starts, length, rows)


def _pairs(tokens: np.ndarray | torch.Tensor, starts: torch.Tensor, length: int,
           rows: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of `length` inputs from `starts` (B,) and their next-token targets, (B, L) each; with `rows`
    (lo, hi), only windows lo..hi-1."""
    if rows is not None:
        starts = starts[rows[0] : rows[1]]
    window = gather(tokens, starts[:, None] + torch.arange(length + 1))  # (B, L+1)
    return window[:, :-1], window[:, 1:]


def describe_dataset(config: DataConfig, data_dir: str | Path | None = None, mirror: str | Path | None = None) \
        -> list[str]:
    """What `tinylm data info` prints of a registered dataset: its files and their origin, its split sizes and
    vocabulary, and how many tokens map to <unk>."""
    spec = sources.DATASETS[config.name]
    corpus = load_corpus(config, data_dir, mirror)
    root = resolve_data_dir(data_dir)
    lines = [f"{spec.name}: {spec.description}" if config.split == "standard" else
             f"{config.label}: {spec.description.split(', split')[0]}, nanoGPT's split: train on the first 90 %, "
             "valid and test both the last 10 % (a reproduction)"]
    for split, remote in spec.files.items():
        lines.append(f"  file {root / remote.relpath} ({remote.size:,} bytes, sha256 {remote.sha256[:12]}…) "
                     f"from {corpus.origins.get(split, corpus.origins.get('train', '?'))}")
    counts = " / ".join(f"{len(corpus.splits[s]):,}" for s in sources.SPLITS)
    unit = "characters" if spec.level == "char" else "tokens"
    lines.append(f"  {spec.level} level; train / valid / test {unit}: {counts}; vocabulary "
                 f"{corpus.tokenizer.vocab_size:,}{' (from cache)' if corpus.from_cache else ''}")
    unk = corpus.tokenizer.unk_id
    if unk is not None:
        mapped = " / ".join(f"{int((corpus.splits[s] == unk).sum()):,}" for s in sources.SPLITS)
        lines.append(f"  <unk> tokens in train / valid / test: {mapped}")
    return lines
