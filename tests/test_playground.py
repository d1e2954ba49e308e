"""`tinylm serve`: the playground's page driven in a real headless Chromium, and its JSON answers to bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import tinylm
from tinylm.models.registry import build_model, config_class
from tinylm.paths import Paths
from tinylm.run_folders import load_run_corpus
from tinylm.training.evaluate import evaluate, score_tokens
from tinylm.web.playground import MAX_CHARS, PASSAGE_TOKENS, Playground
from tinylm.web.server import make_server

from .conftest import TINY_TEXT

pytestmark = pytest.mark.slow  # trains three tiny runs and starts a browser

TINY = {"max_steps": 30, "eval_interval": 15, "eval_tokens": 512, "batch_size": 8}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mirror, data_dir):
    """Two Tiny Shakespeare runs, a word-level one on a text of its own, and a copy of one without its weights."""
    results = tmp_path_factory.mktemp("results")
    text = tmp_path_factory.mktemp("text") / "words.txt"
    text.write_text(TINY_TEXT)
    common = {"results": results, "quiet": True, **TINY}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYLM_DATA_MIRROR", str(mirror))
        mp.setenv("TINYLM_DATA_DIR", str(data_dir))
        transformer = tinylm.train("transformer", "tinyshakespeare", embed_dim=32, n_heads=2, n_layers=1,
                                   context_length=32, **common)
        linear = tinylm.train("linear", "tinyshakespeare", context_length=4, **common)
        words = tinylm.train("linear", data=text, level="word", context_length=2, **common)
    bare = results / "runs" / "no-weights"
    shutil.copytree(transformer.path, bare)
    (bare / "model.safetensors").unlink()
    test = transformer.tokenizer.decode(load_run_corpus(transformer, Paths.of(results, data_dir, mirror))
                                        .tensor("test")[:PASSAGE_TOKENS].tolist())
    return {"results": results, "transformer": transformer, "linear": linear, "words": words, "passage": test,
            "data": Paths.of(results, data_dir, mirror)}


REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


@pytest.fixture
def server(runs, tmp_path):
    """The playground on a free port of the loopback, in a thread, with the shipped report's results and headline
    figure as its reference (and none of the shipped runs)."""
    (tmp_path / "reference" / "figures").mkdir(parents=True)
    shutil.copy(REFERENCE / "results.json", tmp_path / "reference")
    shutil.copy(REFERENCE / "figures" / "headline.png", tmp_path / "reference" / "figures")
    srv = make_server(Playground(runs["data"], reference=tmp_path / "reference"), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def post(url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def folder_state(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_token_scores_are_the_protocol_token_by_token():
    torch.manual_seed(0)
    tokens = torch.randint(0, 30, (500,))
    for name, kw in [("mlp", {"context_length": 8}), ("transformer", {"context_length": 32, "embed_dim": 16,
                     "n_heads": 2, "n_layers": 1}), ("lstm", {"embed_dim": 16, "hidden_dim": 16}),
                     ("mamba", {"embed_dim": 32, "n_layers": 2})]:
        model = build_model(name, config_class(name)(vocab_size=30, **kw))
        s = score_tokens(model, tokens, top=5, stride=16 if name != "lstm" else 100)
        e = evaluate(model, tokens, stride=16 if name != "lstm" else 100)
        assert len(s.logp) == e.tokens == 499
        assert float(s.logp.sum()) == pytest.approx(e.total_logprob, rel=1e-9), name
        assert (s.top_logp[:, 0] >= s.logp.float() - 1e-5).all() and (s.top_logp.diff(dim=1) <= 0).all(), name


def test_compare_and_generate_in_a_headless_browser(runs, server):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    before = folder_state(runs["results"])
    t, lin = runs["transformer"], runs["linear"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server)
        for run in (t, lin):
            page.check(f"#compare-runs input[value='{run.path.name}']")
        assert page.is_disabled("#compare-runs input[value='no-weights']")  # a run without weights: listed, off
        # the default text: a passage of the test split, loaded when the first run is picked
        page.wait_for_function("document.getElementById('text').value.length > 100")
        text = page.input_value("#text")
        assert text == runs["passage"]
        page.fill("#text", "")
        page.click("#passage")
        page.wait_for_function("document.getElementById('text').value.length > 100")
        assert page.input_value("#text") == text
        page.click("#run-compare")
        page.wait_for_selector(".panel.diff")
        tokens = len(t.tokenizer.encode_with_unknowns(text)[0])
        for k in range(2):
            panel = page.locator(".panel.model").nth(k)
            run = t if t.path.name in panel.locator("h3").inner_text() else lin
            assert panel.locator(".tok").count() == tokens
            assert panel.locator(".tok[style*='background']").count() == tokens - 1  # the first has no score
            mean = float(page.get_attribute(f"#mean-{k}", "data-mean"))
            assert mean == pytest.approx(run.score(text).loglik, abs=1e-9)
            assert f"{mean:.4f}" in panel.locator("h3").inner_text()
        page.locator(".panel.model .tok").nth(5).hover()
        assert page.is_visible("#tip") and page.locator("#tip tr").count() == 2

        # bad input: each a line on the page, never a stack trace
        for bad, said in [("   ", "the text is empty"), ("é" * 10, "never saw ('é')"),
                          ("a" * (MAX_CHARS + 1), f"at most {MAX_CHARS:,} characters")]:
            page.fill("#text", bad)
            page.click("#run-compare")
            page.wait_for_selector("#message:visible")
            assert said in page.inner_text("#message") and "Traceback" not in page.content()

        # two browsers at once
        other = browser.new_page()
        other.goto(server)
        for tab in (page, other):
            tab.fill("#text", text)
            for run in (t, lin):
                tab.check(f"#compare-runs input[value='{run.path.name}']")
        page.click("#run-compare")
        other.click("#run-compare")
        for tab in (page, other):
            tab.wait_for_function(f"[...document.querySelectorAll('.mean')].some(m => "
                                  f"Math.abs(m.dataset.mean - {lin.score(text).loglik}) < 1e-9)")

        # generate from both runs: both samples stream in
        page.click("nav button[data-tab=generate]")
        for run in (t, lin):
            page.check(f"#generate-runs input[value='{run.path.name}']")
        page.fill("#prompt", "ROMEO:")
        page.fill("#length", "40")
        page.click("#run-generate")
        page.wait_for_function("[...document.querySelectorAll('.sample')].length === 2 && "
                               "[...document.querySelectorAll('.sample')].every(s => s.textContent.length >= 46)")
        samples = page.locator(".sample").all_inner_texts()
        assert all(s.startswith("ROMEO:") for s in samples)
        page.fill("#temperature", "-1")
        page.click("#run-generate")
        page.wait_for_selector("#message:visible")
        assert "temperature" in page.inner_text("#message")

        # results: the shipped headline, its figure, a run's curve
        page.click("nav button[data-tab=results]")
        shipped = json.loads((REFERENCE / "results.json").read_text())["headline"]
        assert page.locator("table.results tr").count() == 1 + len(shipped["best"])
        best = shipped["best"]["tinyshakespeare"]["transformer"]["test_loglik"]
        assert f"{best:.3f}" in page.inner_text("table.results")
        page.wait_for_function("document.querySelector('#figures img').naturalWidth > 0")
        page.select_option("#curve-run", t.path.name)
        page.wait_for_selector("#curve polyline")
        history = [json.loads(line) for line in (t.path / "history.jsonl").read_text().splitlines()]
        assert len(page.get_attribute("#curve polyline", "points").split()) == len(history) >= 2
        browser.close()
    assert folder_state(runs["results"]) == before  # the page changed nothing on disk


def test_a_run_folder_damaged_while_serving_is_a_message(runs, server, tmp_path):
    damaged = runs["results"] / "runs" / "damaged"
    shutil.copytree(runs["linear"].path, damaged)
    try:
        body = {"runs": ["damaged"], "text": "ROMEO: hello"}
        assert post(f"{server}/api/compare", body)[0] == 200
        (damaged / "model.safetensors").write_bytes(b"not a safetensors file")
        code, answer = post(f"{server}/api/compare", body)
        assert code == 400 and answer["error"].startswith("damaged could not be loaded"), answer
        (damaged / "metrics.json").write_text("{")
        code, answer = post(f"{server}/api/compare", body)
        assert code == 400 and answer == {"error": "no run 'damaged' here (it may have been removed); reload the page"}
    finally:
        shutil.rmtree(damaged)


def test_bad_requests_are_json_lines(runs, server):
    url = server
    assert post(f"{url}/api/compare", b"{not json")[1] == {"error": "the request is not a JSON object"}
    assert post(f"{url}/api/compare", {"runs": "x", "text": "a"})[1] == {"error": "runs must be a list of run ids"}
    code, answer = post(f"{url}/api/compare", {"runs": ["no-weights"], "text": "ab"})
    assert code == 400 and answer["error"].startswith("no-weights has no weights (results only): train it")
    code, answer = post(f"{url}/api/compare", {"runs": [runs["transformer"].path.name, runs["words"].path.name],
                                               "text": "ab"})
    assert code == 400 and answer["error"].startswith("pick runs of one dataset")
    code, answer = post(f"{url}/api/generate", {"runs": [runs["linear"].path.name], "top_p": 2})
    assert code == 400 and "top" in answer["error"]
    code, answer = post(f"{url}/api/nothing", {})
    assert code == 404 and answer == {"error": "nothing at /api/nothing"}


def test_words_outside_the_vocabulary_are_scored_as_unk_and_named(runs, server):
    words = runs["words"]
    code, answer = post(f"{server}/api/compare", {"runs": [words.path.name], "text": "First Citizen: zebra All:"})
    assert code == 200 and answer["unknown"] == ["zebra"] and "<unk>" in answer["tokens"]
    assert answer["models"][0]["mean"] == pytest.approx(words.score("First Citizen: zebra All:").loglik, abs=1e-9)


def test_listening_beyond_the_loopback_warns_in_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tinylm.cli", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--results-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("tinylm playground on http://0.0.0.0:")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert err.strip().splitlines() == ["warning: listening on 0.0.0.0: anyone who can reach this machine can use "
                                        "the playground and read your runs' results"]
