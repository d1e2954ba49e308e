"""Our tokenizers rebuilt with the `tokenizers` library, so `AutoTokenizer` gives the ids tinylm trained on.

Character level: every character is a piece (a Split on any character, newlines included) looked up in a
WordLevel vocabulary; characters outside it map to `<unk>` where the vocabulary has one, else they are removed
first (tinylm drops them). Decoding concatenates.

Word level: every "\\n" becomes " <eos> ", then the text is split at the characters Python's `str.split()` splits
at (its whitespace, which is not the same set as Unicode's or tokenizers' `WhitespaceSplit`), and words outside the
vocabulary map to `<unk>`. So a line break is one `<eos>`, a text ending in a line break ends in `<eos>`, and none is
added at the end of a text without one, as in tinylm. Decoding joins words with spaces and `<eos>` as a line break.

Neither `<eos>` nor `<unk>` is declared a special token: decoding (and `pipeline`, which skips special tokens)
then keeps line breaks and `<unk>` as tinylm's own decoding does.
"""

from __future__ import annotations

import sys
from typing import Any

from tinylm.data.tokenizers import EOS, UNK, Tokenizer
from tinylm.errors import TinyLMError


def _char_class(chars: list[str]) -> str:
    """A regex character class body matching exactly `chars` (each written as \\x{hex})."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


def python_whitespace() -> list[str]:
    """The characters `str.split()` splits at."""
    return [chr(i) for i in range(sys.maxunicode + 1) if chr(i).isspace()]


def build_backend(tok: Tokenizer) -> Any:
    """A `tokenizers.Tokenizer` that encodes text to the same ids as `tok` and decodes them to the same text."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as Backend

    vocab = {t: i for i, t in enumerate(tok.tokens)}
    backend = Backend(models.WordLevel(vocab, unk_token=UNK))
    if tok.level == "char":
        if tok.unk_id is None:  # tinylm drops unknown characters
            known = [t for t in tok.tokens if len(t) == 1]
            backend.normalizer = normalizers.Replace(Regex(f"[^{_char_class(known)}]"), "")
        backend.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")  # (?m): . matches \n
        backend.decoder = decoders.Fuse()
        return backend
    if tok.level != "word":
        raise TinyLMError(f"the HF export knows char and word tokenizers, not '{tok.level}'")
    if tok.unk_id is None or EOS not in vocab:
        raise TinyLMError(f"this word tokenizer lacks {UNK} or {EOS}; rebuild it (train the run again)")
    backend.normalizer = normalizers.Replace("\n", f" {EOS} ")
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(f"[{_char_class(python_whitespace())}]+"), behavior="removed")
    backend.decoder = decoders.Sequence([
        decoders.WordPiece(prefix=" ", cleanup=False),  # a space before every word but the first (no word has one)
        decoders.Replace(Regex(f"^ ?{EOS}$"), "\n"),  # <eos> is a line break, without the space
        decoders.Fuse(),
        decoders.Replace("\n ", "\n"),  # a line starts without a space
    ])
    return backend


def build_hf_tokenizer(tok: Tokenizer, context_length: int) -> Any:
    """`tok` as a `PreTrainedTokenizerFast` (what `AutoTokenizer.from_pretrained` loads back)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=build_backend(tok), model_max_length=context_length,
                                   clean_up_tokenization_spaces=False)
