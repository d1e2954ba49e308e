"""`tinylm export --format hf`: the GPT-2 checkpoint computes our transformer's function, the Llama checkpoint our
llama's, and the tokenizer gives our ids; other models and non-empty folders are refused in one line."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tinylm.cli import main
from tinylm.config import DataConfig
from tinylm.data import sources
from tinylm.data.corpus import load_corpus, split_pieces, with_cuts
from tinylm.data.tokenizers import CharTokenizer, WordTokenizer
from tinylm.errors import TinyLMError
from tinylm.export import export_hf
from tinylm.export.gpt2 import check_mappable
from tinylm.export.hf_tokenizer import build_backend
from tinylm.export.llama import check_llama
from tinylm.models.base import LanguageModel
from tinylm.models.llama import LlamaConfig, LlamaLM
from tinylm.models.transformer import TransformerConfig, TransformerLM
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import load_run
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training.evaluate import evaluate

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

# Small enough that scoring the full valid and test splits at the end of training takes a few seconds.
TINY = ["model.context_length=32", "model.embed_dim=16", "model.n_heads=2", "model.n_layers=2",
        "model.attn_dropout=0.1", "train.eval_interval=20", "train.eval_tokens=256", "train.learning_rate=0.01"]


def _train(cfg, root: Path, data_dir: Path, mirror: Path | None = None) -> Path:
    return train_run(cfg, Paths.of(root / "results", data_dir, mirror), quiet=True)[1]


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory, mirror, data_dir):
    """A tinyshakespeare transformer (20 steps), its export, and the test split's text."""
    root = tmp_path_factory.mktemp("shakespeare")
    cfg = resolve_run("transformer", suite=SuiteFile(), data=DataConfig(name="tinyshakespeare"),
                      train_values={"max_steps": 20}, sets=TINY)
    run_dir = _train(cfg, root, data_dir=data_dir, mirror=mirror)
    out = export_hf(run_dir, root / "hf")
    path = sources.fetch_dataset("tinyshakespeare", data_dir, mirror, quiet=True)["all"][0]
    test = "".join(t for s, t in split_pieces(path, "char", with_cuts([(path, None)], "char")[0][1]) if s == "test")
    return run_dir, out, test, load_corpus(cfg.data, data_dir, mirror, quiet=True)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def llama(request, tmp_path_factory, mirror, data_dir):
    """A tinyshakespeare llama (20 steps), head tied or not, and its export."""
    root = tmp_path_factory.mktemp("llama")
    cfg = resolve_run("llama", suite=SuiteFile(), data=DataConfig(name="tinyshakespeare"),
                      train_values={"max_steps": 20}, sets=[*TINY, f"model.tie_head={request.param}"])
    run_dir = _train(cfg, root, data_dir=data_dir, mirror=mirror)
    return run_dir, export_hf(run_dir, root / "hf"), load_corpus(cfg.data, data_dir, mirror, quiet=True)


def _ptb_like(n_lines: int = 1500) -> str:
    """Lines of words from a small vocabulary, some literal <unk>, odd whitespace str.split() splits at."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(60)] + ["<unk>", "N", "'s", "$"]
    gaps = [" "] * 20 + ["  ", "\t", "\u00a0", "\x0c", "\x1c", "\u2028"]  # \x1c: Python's whitespace, not Unicode's
    lines = ["".join(rng.choice(words) + rng.choice(gaps) for _ in range(rng.randint(0, 12))) for _ in range(n_lines)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """A word-level transformer with `bias: false` on a PTB-like text (vocabulary capped: many <unk>)."""
    root = tmp_path_factory.mktemp("words")
    f = root / "words.txt"
    f.write_text(_ptb_like(), encoding="utf-8")
    data = DataConfig(name="words", level="word", path=str(f), max_vocab=40)
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 20},
                      sets=[*TINY, "model.context_length=16", "model.bias=false"])
    run_dir = _train(cfg, root, data_dir=root / "d")
    return run_dir, export_hf(run_dir, root / "hf"), load_corpus(data, root / "d", quiet=True)


class HF(LanguageModel):
    """A transformers model behind our model interface, so `evaluate` scores it by the very same code."""

    def __init__(self, hf, config):
        super().__init__()
        self.hf, self.config = hf, config

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(idx).logits


def _max_logit_diff(run_dir: Path, out: Path, ids: torch.Tensor) -> float:
    ours = load_run(run_dir).model
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        return float((ours(ids) - theirs(ids).logits).abs().max())


def test_logits_match(shakespeare):
    run_dir, out, _, corpus = shakespeare
    ids = corpus.tensor("test")[: 8 * 32].view(8, 32)
    assert _max_logit_diff(run_dir, out, ids) <= 1e-5


def test_bias_false_exports_exactly_with_zero_biases(words):
    run_dir, out, corpus = words
    assert load_run(run_dir).model.blocks[0].attn.qkv.bias is None
    hf = transformers.GPT2LMHeadModel.from_pretrained(out)
    assert not hf.transformer.h[0].attn.c_attn.bias.any() and not hf.transformer.ln_f.bias.any()
    assert _max_logit_diff(run_dir, out, corpus.tensor("test")[: 4 * 16].view(4, 16)) <= 1e-5


def test_llama_exports_as_a_llama_with_our_logits_and_scores(llama):
    """The rotary layout needs no permutation: a LlamaForCausalLM gives our logits, and our protocol scores it as it
    scores our model (to 1e-6 relative); an untied head is exported as its own tensor."""
    run_dir, out, corpus = llama
    run = load_run(run_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    tied = run.model.config.tie_head
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == tied == hf.config.tie_word_embeddings
    ids = corpus.tensor("test")[: 8 * 32].view(8, 32)
    assert _max_logit_diff(run_dir, out, ids) <= 1e-5
    tokens = corpus.tensor("test")[:2000]
    ours, theirs = evaluate(run.model, tokens), evaluate(HF(hf, run.model.config), tokens)
    assert (theirs.tokens, theirs.window) == (ours.tokens, ours.window) == (1999, 32)
    assert abs(theirs.total_logprob - ours.total_logprob) <= 1e-6 * abs(ours.total_logprob)


def test_llama_greedy_generation_with_caches_is_ours(llama):
    """transformers' KV cache turns each new key by its offset as ours does: the same 20 greedy tokens."""
    run_dir, out, corpus = llama
    model = load_run(run_dir).model
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = corpus.tensor("test")[:8].view(1, 8)
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, use_cache=True)[0, 8:].tolist()
    cache, ids, ours = model.new_cache(), prompt, []
    with torch.no_grad():
        for _ in range(20):
            nxt = int(model(ids, cache=cache)[0, -1].argmax())
            ours.append(nxt)
            ids = torch.tensor([[nxt]])
    assert ours == theirs


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_test_loglik_by_the_same_protocol(shakespeare, attention):
    """Our evaluate() on the first 2,000 test tokens, run on our model and on the exported one: the same windows,
    the same float64 sums; equal to 1e-6 relative (float32 logits may differ in the last bits: bit for bit equal
    with transformers' sdpa attention here, ~1e-9 relative with its eager attention)."""
    run_dir, out, _, corpus = shakespeare
    run = load_run(run_dir)
    tokens = corpus.tensor("test")[:2000]
    hf = transformers.GPT2LMHeadModel.from_pretrained(out, attn_implementation=attention).eval()
    hf = HF(hf, run.model.config)
    ours, theirs = evaluate(run.model, tokens), evaluate(hf, tokens)
    assert (theirs.tokens, theirs.window, theirs.stride) == (ours.tokens, ours.window, ours.stride) == (1999, 32, 16)
    assert abs(theirs.total_logprob - ours.total_logprob) <= 1e-6 * abs(ours.total_logprob)


def test_char_tokenizer_round_trips_the_test_split(shakespeare):
    _, out, text, corpus = shakespeare
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(text, verbose=False)["input_ids"]
    assert ids == corpus.splits["test"].tolist() and len(ids) == len(text)
    assert tok.decode(ids) == text


def test_word_tokenizer_round_trips_the_test_split(words):
    """Each line break is one <eos> (the split ends in one: its text ends with a line break), words outside the
    vocabulary and literal '<unk>' are <unk>, and decoding gives our decoding (words joined by spaces)."""
    run_dir, out, corpus = words
    run = load_run(run_dir)
    ours, path = run.tokenizer, Path(run.config.data.path)
    test = path.read_text(encoding="utf-8")[with_cuts([(path, None)], "word")[0][1][1] :]
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(test, verbose=False)["input_ids"]
    assert ids == corpus.splits["test"].tolist()
    assert ids.count(ours.index["<eos>"]) == test.count("\n") and ids[-1] == ours.index["<eos>"]
    assert ids.count(ours.unk_id) > 100
    assert tok.decode(ids) == ours.decode(ids)


@pytest.mark.parametrize("tokens, text", [
    (["\n", "a", "b"], "ab§\nba c\n"),  # no <unk>: unknown characters are dropped, as tinylm does
    (["a", "b", "<unk>"], "ab§<unk>\n"),  # with <unk>: they map to it; a literal '<unk>' is five characters
])
def test_char_tokenizer_unknown_characters(tokens, text):
    ours, hf = CharTokenizer(tokens), build_backend(CharTokenizer(tokens))
    assert hf.encode(text).ids == ours.encode(text).tolist()


def test_word_tokenizer_edges():
    ours = WordTokenizer(["<eos>", "a", "b", "<unk>"])
    hf = build_backend(ours)
    for text in ["\na b\n\n", "a  b", "a\x1cb\x85c <eos> zz", ""]:
        assert hf.encode(text).ids == ours.encode(text).tolist(), repr(text)
    ids = [0, 1, 2, 0, 0, 3, 1, 0]
    assert hf.decode(ids) == ours.decode(ids) == "\na b\n\n<unk> a\n"


def test_pipeline_generates_text(shakespeare):
    _, out, _, _ = shakespeare
    pipe = transformers.pipeline("text-generation", model=str(out), tokenizer=str(out))
    transformers.set_seed(0)
    text = pipe("ROMEO:", max_new_tokens=12, do_sample=True)[0]["generated_text"]
    assert text.startswith("ROMEO:") and len(text) == 6 + 12  # one character per token


def _fake_run(root: Path, model: str) -> Path:
    """A run directory with only its config: what the export reads before refusing a model."""
    cfg = resolve_run(model, suite=SuiteFile(), data=DataConfig(name="tinyshakespeare"))
    run_dir = root / f"{model}-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


@pytest.mark.parametrize("model, why", [("attention", "no feed-forward"), ("mlp", "fixed window"),
                                        ("linear", "fixed window"), ("lstm", "no LSTM")])
def test_other_models_are_refused_in_one_line(tmp_path, capsys, model, why):
    code = main(["export", str(_fake_run(tmp_path, model)), "--format", "hf", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert why in err and "only transformer and llama runs can be exported" in err
    assert not (tmp_path / "out").exists()


def test_without_transformers_the_extra_is_named(shakespeare, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    assert main(["export", str(shakespeare[0]), str(tmp_path / "out")]) == 1
    assert 'pip install -e ".[hf]"' in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_non_empty_folder_is_replaced_only_with_force(shakespeare, tmp_path, capsys):
    run_dir = shakespeare[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), "--format", "hf", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and (out / "keep.txt").is_file()
    assert main(["export", str(run_dir), str(out), "--force"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}") and "from_pretrained" in said and len(said.splitlines()) == 1
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left beside it


def test_an_adaptive_head_is_refused():
    """A GPT-2's LM head is one full softmax: a transformer trained with the adaptive head cannot be one."""
    cfg = TransformerConfig(vocab_size=50, head="adaptive", cutoffs=[10, 30], token_counts=list(range(50, 0, -1)),
                            embed_dim=16, n_heads=2, n_layers=1, context_length=8)
    with pytest.raises(TinyLMError, match="adaptive softmax head"):
        check_mappable(TransformerLM(cfg))


def test_a_llama_with_an_adaptive_head_is_refused():
    cfg = LlamaConfig(vocab_size=50, head="adaptive", cutoffs=[10, 30], token_counts=list(range(50, 0, -1)),
                      embed_dim=16, n_heads=2, n_layers=1, context_length=8)
    with pytest.raises(TinyLMError, match="adaptive softmax head"):
        check_llama(LlamaLM(cfg))
