"""MkDocs hooks: pages generated from the repository at build time, so that they cannot go stale.

- `results.md` is the shipped report, `results/reference/RESULTS.md` (written by `tinylm report --reference`), with
  its figures.
- `<!-- profiles -->` becomes the table of the profiles in `configs/profiles/`, from their own descriptions.
- `<!-- shipped-weights -->` becomes the table of the runs shipped with weights (`results/reference/weights.json`).
- `<!-- metrics-json -->` becomes the table of the keys of metrics.json, from the fields of `RunMetrics`
  (`src/tinylm/run_metrics.py`) and the docstring under each.
- `<!-- layers -->` in a page becomes the layer diagram of the package, read from the import-linter contract in
  `pyproject.toml` (which `lint-imports` checks) and the first sentence of each layer's docstring.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml
from mkdocs.structure.files import File

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"
LAYERS_MARK = "<!-- layers -->"
PROFILES_MARK = "<!-- profiles -->"
WEIGHTS_MARK = "<!-- shipped-weights -->"
METRICS_MARK = "<!-- metrics-json -->"
JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "None": "null", "Status": "string (a status)"}


def on_files(files, config):
    """Add the shipped report and its figures to the site."""
    files.append(File.generated(config, "results.md", abs_src_path=str(REFERENCE / "RESULTS.md")))
    for png in sorted((REFERENCE / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def _summary(module: str) -> str:
    """The first sentence of a module's (or package's) docstring."""
    base = REPO / "src" / Path(*module.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s", first, maxsplit=1)[0].rstrip(".")


def layer_diagram() -> str:
    """The layers of `pyproject.toml`'s contract, top to bottom, each module with its summary."""
    contract = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = contract["contracts"][0]["layers"]
    lines = ["| layer | modules (siblings of a layer do not import each other) |", "|---|---|"]
    for i, layer in enumerate(layers):
        modules = [m.strip() for m in layer.split("|")]
        cells = "<br>".join(f"`{m.removeprefix('tinylm.')}`: {_summary(m)}" for m in modules)
        lines.append(f"| {i + 1} | {cells} |")
    return "\n".join(lines)


def profile_table() -> str:
    """One row per profile file: its name, description and datasets (those of the profile it extends, if none)."""
    profiles = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) or {}
                for p in sorted((REPO / "configs" / "profiles").glob("*.yaml"))}
    lines = ["| profile | what it is | datasets: architectures |", "|---|---|---|"]
    for name, prof in profiles.items():
        datasets = prof.get("datasets") or profiles.get(prof.get("extends"), {}).get("datasets") or {}
        where = "<br>".join(f"{ds}: {', '.join(models)}" for ds, models in datasets.items())
        lines.append(f"| `{name}` | {prof.get('description', '')} | {where} |")
    return "\n".join(lines)


def weights_table() -> str:
    """One row per shipped model.safetensors: the run, its model and dataset, parameters, test score and size."""
    shipped = json.loads((REFERENCE / "weights.json").read_text(encoding="utf-8"))
    lines = ["| run | model | dataset | parameters | test log-likelihood | file |", "|---|---|---|---:|---:|---:|"]
    for run, entry in shipped.items():
        m = json.loads((REFERENCE / "runs" / run / "metrics.json").read_text(encoding="utf-8"))
        lines.append(f"| `{run}` | {m['model']} | {m['dataset']} | {m['params']:,} | {m['test_loglik']:.4f} | "
                     f"{entry['bytes'] / 1e6:.1f} MB |")
    total = sum(e["bytes"] for e in shipped.values()) / 1e6
    return "\n".join(lines + ["", f"{len(shipped)} files, {total:.1f} MB in all."])


def metrics_table() -> str:
    """One row per field of RunMetrics, in the order metrics.json has them: the key, its JSON type, its docstring."""
    tree = ast.parse((REPO / "src" / "tinylm" / "run_metrics.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RunMetrics")
    lines = ["| key | value | what it holds |", "|---|---|---|"]
    for node, after in zip(cls.body, cls.body[1:]):
        if not (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            continue
        kind = " or ".join(JSON_TYPES[t] for t in ast.unparse(node.annotation).split(" | "))
        kind += ", always there" if node.value is None else ""
        lines.append(f"| `{node.target.id}` | {kind} | {' '.join(after.value.value.split())} |")
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    """Fill in the generated parts of a page."""
    if LAYERS_MARK in markdown:
        markdown = markdown.replace(LAYERS_MARK, layer_diagram())
    if WEIGHTS_MARK in markdown:
        markdown = markdown.replace(WEIGHTS_MARK, weights_table())
    if PROFILES_MARK in markdown:
        markdown = markdown.replace(PROFILES_MARK, profile_table())
    if METRICS_MARK in markdown:
        markdown = markdown.replace(METRICS_MARK, metrics_table())
    return markdown
