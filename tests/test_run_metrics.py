"""metrics.json has one schema, RunMetrics: every shipped file loads and round-trips, and a file of another shape is
refused with a message naming the file, the key and what to do."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from tinylm.errors import TinyLMError
from tinylm.fields import field_docs
from tinylm.run_folders import read_metrics
from tinylm.run_metrics import FIELDS, FINISHED, REQUIRED, STATUSES, RunMetrics

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "runs"
SHIPPED = sorted(REFERENCE.glob("*/metrics.json"))
MINIMAL = {"model": "mlp", "dataset": "tinyshakespeare", "status": "running"}


def test_every_shipped_metrics_file_loads_and_round_trips():
    assert len(SHIPPED) > 300
    for path in SHIPPED:
        data = json.loads(path.read_text(encoding="utf-8"))
        metrics = RunMetrics.from_json(data, path)
        written = metrics.to_json()
        assert RunMetrics.from_json(json.loads(json.dumps(written)), path) == metrics, path
        # every key written today, in the order written; older files lack a few (null when written again)
        assert list(written) == list(FIELDS)
        assert {k: v for k, v in written.items() if k in data} == data and list(data) == [k for k in FIELDS
                                                                                          if k in data], path
        assert all(written[k] is None for k in FIELDS if k not in data), path


def test_the_schema_is_the_order_written_and_every_field_is_documented():
    shipped_order = list(json.loads(SHIPPED[0].read_text(encoding="utf-8")))
    assert [k for k in FIELDS if k in shipped_order] == shipped_order
    assert REQUIRED == ("model", "dataset", "status")
    docs = field_docs(RunMetrics)
    assert set(docs) == set(FIELDS) and all(docs.values())


def test_a_minimal_file_loads_with_none_for_what_it_lacks():
    metrics = RunMetrics.from_json(MINIMAL, "m.json")
    assert metrics.valid_loss is None and not metrics.finished and metrics.resumable
    assert metrics.selection_loss == math.inf
    assert RunMetrics.from_json(metrics.to_json(), "m.json") == metrics


def test_ints_are_numbers_and_held_as_floats():
    metrics = RunMetrics.from_json({**MINIMAL, "valid_loss": 2, "train_flops": 10**12}, "m.json")
    assert metrics.valid_loss == 2.0 and isinstance(metrics.valid_loss, float)
    assert isinstance(metrics.train_flops, float) and metrics.selection_loss == 2.0


@pytest.mark.parametrize("status", STATUSES)
def test_finished_is_complete_or_stopped_early(status):
    metrics = RunMetrics(model="mlp", dataset="ptb", status=status)
    assert metrics.finished == (status in FINISHED) == (status in ("complete", "stopped_early"))


@pytest.mark.parametrize("data, message", [
    ([1, 2], r"m\.json is damaged: it holds a list, not the metrics of a run; delete the run folder"),
    ({"model": "mlp", "dataset": "ptb"}, r"m\.json is damaged: the field 'status' is missing; delete the run folder"),
    ({**MINIMAL, "test_logik": -1.5}, r"'test_logik' is not a field of metrics\.json \(did you mean 'test_loglik'\?\)"),
    ({**MINIMAL, "colour": "red"}, r"'colour' is not a field of metrics\.json \(the fields are run_id, model, "),
    ({**MINIMAL, "model": 3}, r"m\.json is damaged: 'model' must be a string, not 3; delete the run folder"),
    ({**MINIMAL, "params": 1.5}, r"'params' must be an integer or null, not 1\.5"),
    ({**MINIMAL, "test_loglik": "x"}, r"'test_loglik' must be a number or null, not 'x'"),
    ({**MINIMAL, "status": "done"}, r"'status' must be one of running, interrupted, complete, stopped_early or "
                                    r"diverged, not 'done'"),
])
def test_a_file_of_another_shape_is_refused_naming_the_file_and_the_key(data, message):
    with pytest.raises(TinyLMError, match=message):
        RunMetrics.from_json(data, "m.json")


@pytest.mark.parametrize("key", ["params", "valid_loss", "steps", "train_flops"])
def test_a_bool_is_never_a_number(key):
    with pytest.raises(TinyLMError, match=f"'{key}' must be an? (integer|number) or null, not True"):
        RunMetrics.from_json({**MINIMAL, key: True}, "m.json")


def test_every_problem_of_a_file_is_named_at_once():
    with pytest.raises(TinyLMError) as e:
        RunMetrics.from_json({"model": 3, "dataset": None, "status": "complete", "test_loglik": "x"}, "m.json")
    assert all(f"'{key}' must be" in str(e.value) for key in ("model", "dataset", "test_loglik"))


def test_what_the_code_builds_is_checked_too():
    with pytest.raises(TinyLMError, match="'steps' must be an integer or null"):
        RunMetrics(model="mlp", dataset="ptb", status="complete", steps="10")
    metrics = RunMetrics(model="mlp", dataset="ptb", status="complete")
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.steps = 3  # type: ignore[misc]


def test_read_metrics_names_the_damaged_file(tmp_path):
    assert read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text(json.dumps({**MINIMAL, "params": True}))
    with pytest.raises(TinyLMError, match=re.escape(f"{tmp_path / 'metrics.json'} is damaged: 'params' must be")):
        read_metrics(tmp_path)
