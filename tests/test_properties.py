"""Property tests (hypothesis): tokenizers, config loading and the evaluation protocol."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.config import TrainConfig
from tinylm.data.tokenizers import CharTokenizer, WordTokenizer
from tinylm.errors import TinyLMError
from tinylm.fields import from_dict
from tinylm.models import build_model
from tinylm.suite_file import parse_suite, resolve_run
from tinylm.training.evaluate import evaluate, window_plan

ALPHABET = "abcXYZ \n.,;!é"


@given(st.text(alphabet=ALPHABET, min_size=1))
def test_char_round_trip_over_its_vocabulary(text):
    tok = CharTokenizer.build(ALPHABET)
    assert tok.decode(tok.encode(text)) == text


WORDS = st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "<unk>"]), min_size=1, max_size=8)


@given(st.lists(WORDS, min_size=1, max_size=6))
def test_word_round_trip_of_normalised_text(lines):
    text = "\n".join(" ".join(words) for words in lines) + "\n"
    tok = WordTokenizer.build("the cat sat on mat <unk>\n")
    assert tok.decode(tok.encode(text)) == text


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(-1, 2) | st.just(float("nan")),
                    st.text(max_size=5), st.lists(st.integers(), max_size=2))
KEYS = st.sampled_from(["learning_rate", "batch_size", "epochs", "dropout", "n_layers", "n_heads", "scheduler",
                        "seed", "lr", "context_length", "precision", "compile", "embed_dim"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, SCALARS, max_size=4), st.sampled_from(["linear", "mlp", "attention", "transformer"]))
def test_any_config_mapping_loads_or_raises_the_project_error(values, model):
    try:
        cfg = resolve_run(model, suite=parse_suite({"models": {model: values}}))
        cfg.model_config(65)
    except TinyLMError:
        pass
    try:
        from_dict(TrainConfig, values, "train")
    except TinyLMError:
        pass


@given(st.integers(2, 400), st.integers(1, 64), st.data())
def test_window_plan_scores_every_token_exactly_once(n, window, data):
    stride = data.draw(st.integers(1, window))
    scored = []
    for a, length, first in window_plan(n, window, stride):
        scored += range(a + first + 1, a + length + 1)
    assert scored == list(range(1, n))


MODEL = build_model("attention", {"vocab_size": 5, "context_length": 8, "embed_dim": 8, "n_heads": 2,
                                  "n_layers": 1}).eval()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 60), st.integers(1, 8), st.integers(1, 5))
def test_evaluate_counts_every_token_once_for_any_split_stride_and_batch(n, stride, batch):
    tokens = torch.randint(0, 5, (n,))
    result = evaluate(MODEL, tokens, batch_size=batch, stride=stride)
    assert result.tokens == n - 1
    reference = evaluate(MODEL, tokens, batch_size=1, stride=stride)
    assert abs(result.total_logprob - reference.total_logprob) < 1e-6 * max(1.0, abs(reference.total_logprob))
