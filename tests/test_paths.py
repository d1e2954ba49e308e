"""`Paths.of`: each folder from its argument, else its environment variable, else its default, checked as it is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinylm.errors import UsageError
from tinylm.paths import Paths


def test_arguments_win_over_environment_variables_which_win_over_defaults(tmp_path, monkeypatch):
    for name in ("TINYLM_RESULTS_DIR", "TINYLM_DATA_DIR", "TINYLM_DATA_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    assert Paths.of() == Paths(Path("results"), Path("data"), None)
    for name in ("env-results", "env-data", "env-mirror", "arg-mirror"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("TINYLM_RESULTS_DIR", str(tmp_path / "env-results"))
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(tmp_path / "env-mirror"))
    assert Paths.of() == Paths(tmp_path / "env-results", tmp_path / "env-data", tmp_path / "env-mirror")
    given = Paths.of(tmp_path / "r", str(tmp_path / "d"), tmp_path / "arg-mirror")
    assert given == Paths(tmp_path / "r", tmp_path / "d", tmp_path / "arg-mirror")


@pytest.mark.parametrize(("field", "message"), [
    ("results", "the results folder afile is a file; pass a folder with --results-dir (or TINYLM_RESULTS_DIR)"),
    ("data", "the data directory afile is a file; pass a folder with --data-dir (or TINYLM_DATA_DIR)"),
    ("mirror", "the mirror afile is a file; pass the folder that holds tinyshakespeare/, ptb/ and wikitext-2/ with "
               "--mirror (or TINYLM_DATA_MIRROR)"),
])
def test_a_file_given_as_a_folder_is_refused_in_one_line(tmp_path, field, message):
    Path("afile").write_text("not a folder\n", encoding="utf-8")  # the test runs in tmp_path
    with pytest.raises(UsageError) as e:
        Paths.of(**{field: "afile"})
    assert str(e.value) == message and "\n" not in message and e.value.exit_code == 2


def test_a_mirror_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(UsageError, match="mirror directory .*gone does not exist; fix --mirror"):
        Paths.of(mirror=tmp_path / "gone")
