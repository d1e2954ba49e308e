"""Character and word tokenizers, built from the training split and saved as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tinylm.errors import TinyLMError
from tinylm.files import atomic_write_text

UNK = "<unk>"
EOS = "<eos>"


class Tokenizer:
    """A fixed vocabulary; `encode` maps text to ids, `decode` maps ids back to text."""

    level: str = ""

    def __init__(self, tokens: list[str], counts: list[int] | None = None):
        if len(set(tokens)) != len(tokens):
            raise TinyLMError("tokenizer vocabulary has duplicate entries; rebuild it from the dataset")
        if counts is not None and (len(counts) != len(tokens) or not all(isinstance(c, int) and c >= 0
                                                                            for c in counts)):
            raise TinyLMError("tokenizer counts must be one non-negative integer per token; rebuild it")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.unk_id = self.index.get(UNK)
        #: training count of every id, once counted (`Corpus.train_counts`); saved with the tokenizer
        self.counts = counts

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        """Number of token types."""
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """Text -> token strings (before vocabulary lookup)."""
        raise NotImplementedError

    def join(self, tokens: Iterable[str]) -> str:
        """Token strings -> text."""
        raise NotImplementedError

    def encode_with_unknowns(self, text: str) -> tuple[np.ndarray, list[str]]:
        """Ids of `text` and the distinct out-of-vocabulary pieces (mapped to <unk>, or dropped without one)."""
        index, unk = self.index, self.unk_id
        ids, unknown = [], {}
        for piece in self.split(text):
            i = index.get(piece)
            if i is None:
                unknown[piece] = None
                if unk is None:
                    continue
                i = unk
            ids.append(i)
        return np.asarray(ids, dtype=np.int64), list(unknown)

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`; unknown pieces map to <unk> (dropped if the vocabulary has none)."""
        return self.encode_with_unknowns(text)[0]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids."""
        return self.join(self.tokens[int(i)] for i in ids)

    def start_ids(self) -> list[int]:
        """What generation starts from with an empty prompt."""
        raise NotImplementedError

    def to_json(self) -> dict:
        """JSON-ready description."""
        out: dict = {"type": self.level, "tokens": self.tokens}
        if self.counts is not None:
            out["counts"] = self.counts
        return out

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (atomically)."""
        atomic_write_text(Path(path), json.dumps(self.to_json(), ensure_ascii=False))


class CharTokenizer(Tokenizer):
    """One token per character; `<unk>` only if some text outside training needs it."""

    level = "char"

    @classmethod
    def build(cls, train_text: str, other_texts: Iterable[str] = ()) -> CharTokenizer:
        """Vocabulary = sorted characters of the training text (+ <unk> if other texts have unseen characters)."""
        return cls.from_chars(set(train_text), set().union(*map(set, other_texts)))

    @classmethod
    def from_chars(cls, train: set[str], other: set[str]) -> CharTokenizer:
        """Vocabulary = sorted `train` characters (+ <unk> if `other` has characters outside them)."""
        chars = sorted(train)
        return cls(chars + [UNK] if other - train else chars)

    def split(self, text: str) -> list[str]:
        return list(text)

    def encode_with_unknowns(self, text: str) -> tuple[np.ndarray, list[str]]:
        if self.unk_id is None and len(self.tokens) < 256 and all(len(t) == 1 for t in self.tokens):
            # Fast path for big texts: a byte-level lookup table when every character is known and ASCII.
            try:
                raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
            except UnicodeEncodeError:
                raw = None
            if raw is not None and all(ord(t) < 128 for t in self.tokens):
                table = np.full(128, -1, dtype=np.int64)
                for i, t in enumerate(self.tokens):
                    table[ord(t)] = i
                ids = table[raw]
                if (ids >= 0).all():
                    return ids, []
        return super().encode_with_unknowns(text)

    def join(self, tokens: Iterable[str]) -> str:
        return "".join(tokens)

    def start_ids(self) -> list[int]:
        return [self.index.get("\n", 0)]


class WordTokenizer(Tokenizer):
    """Whitespace tokens; every newline is an `<eos>` token. Decode joins with spaces, `<eos>` as a newline."""

    level = "word"

    @classmethod
    def build(cls, train_text: str, max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary from training tokens, most frequent first (ties alphabetical); <eos> and <unk> included.

        With `max_vocab`, <eos>, <unk> and the `max_vocab - 2` most frequent words are kept; the rest map to <unk>.
        """
        counts = Counter()
        for line in train_text.split("\n"):
            counts.update(line.split())
        counts[EOS] = train_text.count("\n")
        return cls.from_counts(counts, max_vocab)

    @classmethod
    def from_counts(cls, counts: Counter, max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary from training token counts (<eos> counted as line breaks), as `build`."""
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        if max_vocab is not None and len(ordered) > max_vocab:
            kept = [t for t in ordered if t not in (UNK, EOS)][: max_vocab - 2]
            ordered = sorted(kept + [EOS, UNK], key=lambda t: (-counts[t], t))
        elif UNK not in counts:
            ordered.append(UNK)
        return cls(ordered)

    def split(self, text: str) -> list[str]:
        lines = text.split("\n")
        out: list[str] = []
        for i, line in enumerate(lines):
            out.extend(line.split())
            if i < len(lines) - 1:
                out.append(EOS)
        return out

    def join(self, tokens: Iterable[str]) -> str:
        out, line_start = [], True
        for t in tokens:
            if t == EOS:
                out.append("\n")
                line_start = True
            else:
                out.append(t if line_start else " " + t)
                line_start = False
        return "".join(out)

    def start_ids(self) -> list[int]:
        return [self.index[EOS]]


def tokenizer_from_json(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON description."""
    kinds = {"char": CharTokenizer, "word": WordTokenizer}
    if not isinstance(data, dict) or data.get("type") not in kinds or not isinstance(data.get("tokens"), list):
        raise TinyLMError("tokenizer.json is not a tinylm tokenizer (needs 'type' char|word and 'tokens')")
    return kinds[data["type"]](data["tokens"], data.get("counts"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer saved with `Tokenizer.save`."""
    path = Path(path)
    if not path.is_file():
        raise TinyLMError(f"{path} does not exist; this run directory is incomplete (train it again)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TinyLMError(f"{path} is corrupted ({e}); train the run again") from None
    return tokenizer_from_json(data)
