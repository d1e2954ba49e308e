"""Text from a trained run: one-shot generation and the interactive prompt (`tinylm chat`)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from tinylm.data.tokenizers import EOS, UNK
from tinylm.errors import TinyLMError, UsageError
from tinylm.generate.sampling import generate_ids
from tinylm.models.registry import model_names
from tinylm.run_folders import LoadedRun, load_run
from tinylm.run_lookup import resolve_run_dir


def check_sampling(
    temperature: float, top_k: int | None, top_p: float | None, length: int, seed: int | None = None
) -> None:
    """Reject sampling settings that make no sense, with what to use instead."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise UsageError(f"--temperature must be a finite number >= 0 (got {temperature}); 0 is greedy")
    if seed is not None and not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2^63) (got {seed})")
    if top_k is not None and top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (got {top_k}); 0 keeps every token")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1] (got {top_p})")
    if length < 0:
        raise UsageError(f"--length must be >= 0 (got {length})")


def describe(run: LoadedRun, temperature: float, top_k: int | None, top_p: float | None, length: int) -> str:
    """One line naming the run and the sampling settings (printed by `generate` and `chat`)."""
    return (f"model {run.config.model_name} ({run.run_dir.name}), temperature {temperature}, "
            f"top-k {top_k or 'off'}, top-p {top_p or 'off'}, length {length}")


def encode_prompt(run: LoadedRun, prompt: str, warn: Callable[[str], None]) -> list[int]:
    """Prompt ids; unknown pieces are mapped to <unk> (or dropped) with a warning; all-unknown is an error."""
    tok = run.tokenizer
    if not prompt:
        return tok.start_ids()
    ids, unknown = tok.encode_with_unknowns(prompt)
    known = [i for i in ids.tolist() if i != tok.unk_id]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        fate = f"mapped to {UNK}" if tok.unk_id is not None else "dropped"
        kind = "characters" if tok.level == "char" else "words"
        if not known:
            raise TinyLMError(f"the prompt has no {kind} this model knows ({shown}); use text like its training data")
        warn(f"warning: {len(unknown)} prompt {kind} not in the vocabulary were {fate}: {shown}")
    if len(ids) == 0:
        return tok.start_ids()
    return ids.tolist()


def generate_text(
    run: LoadedRun,
    prompt: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    out: TextIO | None = None,
    warn: Callable[[str], None] = lambda m: None,
) -> str:
    """Continue `prompt` by `length` tokens, streaming the prompt and each new piece to `out`; returns the text."""
    pieces = [prompt]
    if out is not None:
        out.write(prompt)
        out.flush()
    for text in generate_pieces(run, prompt, length, temperature, top_k, top_p, seed, use_cache, warn):
        pieces.append(text)
        if out is not None:
            out.write(text)
            out.flush()
    if out is not None:
        out.write("\n")
        out.flush()
    return "".join(pieces)


def generate_pieces(
    run: LoadedRun,
    prompt: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    warn: Callable[[str], None] = lambda m: None,
) -> Iterator[str]:
    """The text of each new token after `prompt`, as it is sampled (a word after a space, an end of line as one).
    The prompt is encoded at once: a prompt the vocabulary cannot encode is an error before any piece."""
    ids = encode_prompt(run, prompt, warn)
    return _token_texts(run, generate_ids(run.model, ids, length, temperature, top_k, top_p, seed, use_cache),
                   not prompt or prompt.endswith("\n"))


def _token_texts(run: LoadedRun, ids: Iterator[int], line_start: bool) -> Iterator[str]:
    tok = run.tokenizer
    word = tok.level == "word"
    for i in ids:
        text = tok.tokens[i]
        if word:
            if text == EOS:
                text, line_start = "\n", True
            else:
                text, line_start = (text if line_start else " " + text), False
        yield text


HELP = """commands:
  temp X      sampling temperature (0 = greedy)      topk N    keep the N most likely tokens (0 = all)
  topp P      nucleus mass in (0, 1]                 length N  tokens per answer
  model NAME  switch to the best run of NAME         help      this text
  quit        leave (Ctrl-D and Ctrl-C too)
anything else is a prompt to continue"""


class Chat:
    """A prompt loop: each line is continued by the model; a few commands change the sampling."""

    def __init__(
        self,
        run_dir: str | None = None,
        model: str | None = None,
        dataset: str = "tinyshakespeare",
        results: str | None = None,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        length: int = 200,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ):
        self.dataset, self.results = dataset, results
        self.run = load_run(resolve_run_dir(run_dir, model, dataset, results))
        self.temperature, self.top_k, self.top_p, self.length = temperature, top_k, top_p, length
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def settings(self) -> str:
        return describe(self.run, self.temperature, self.top_k, self.top_p, self.length)

    def command(self, line: str) -> bool:
        """Handle a command line; False if the line is a prompt."""
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        setters = {
            "temp": ("temp X (a number >= 0, e.g. temp 0.5)", float, lambda v: 0 <= v < math.inf, "temperature"),
            "topk": ("topk N (an integer >= 0; 0 keeps every token)", int, lambda v: v >= 0, "top_k"),
            "topp": ("topp P (a number in (0, 1])", float, lambda v: 0 < v <= 1, "top_p"),
            "length": ("length N (an integer >= 0)", int, lambda v: v >= 0, "length"),
        }
        if name in setters:
            usage, kind, ok, attr = setters[name]
            try:
                parsed = kind(value)
                if not ok(parsed):
                    raise ValueError
            except ValueError:
                self.say(f"usage: {usage}")
                return True
            setattr(self, attr, parsed)
            self.say(self.settings())
            return True
        if name == "model":
            if value not in model_names():
                self.say(f"usage: model NAME, one of: {', '.join(model_names())}")
                return True
            try:
                self.run = load_run(resolve_run_dir(None, value, self.dataset, self.results))
                self.say(self.settings())
            except TinyLMError as e:
                self.say(f"error: {e}")
            return True
        if name == "help" and not value:
            self.say(HELP)
            return True
        return False

    def read(self) -> str | None:
        """One line of input, or None at the end."""
        if self.stdin is sys.stdin and sys.stdin.isatty():
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
            try:
                return input("> ")
            except EOFError:
                return None
        self.stdout.write("> ")
        self.stdout.flush()
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def loop(self) -> int:
        """Run until quit, end of input or Ctrl-C; returns the exit status."""
        self.say(f"tinylm chat: {self.settings()}\ntype a prompt, or 'help' for commands")
        try:
            while True:
                line = self.read()
                if line is None or line.strip() in ("quit", "exit"):
                    break
                if not line.strip() or self.command(line):
                    continue
                if any("\udc80" <= ch <= "\udcff" for ch in line):  # bytes that were not UTF-8, kept as escapes
                    self.say("error: that line was not UTF-8 text; set your terminal to UTF-8 and type it again")
                    continue
                try:
                    generate_text(self.run, line, self.length, self.temperature, self.top_k, self.top_p,
                                  out=self.stdout, warn=self.say)
                except TinyLMError as e:
                    self.say(f"error: {e}")
        except KeyboardInterrupt:
            pass
        self.say("\nGoodbye!")
        return 0
