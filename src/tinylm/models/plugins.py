"""Models from outside the package: a class in your own file (`path/to/file.py:Class`), in an importable module
(`package.module:Class`), or named by an installed package's entry point in the group `tinylm.models`.

A plugin class subclasses `tinylm.LanguageModel` and may say, as class attributes, its `name` (default: the class
name in lower case), `color`, `ablation` (the config field its ablation sweeps, or that field with its values:
`{"n_layers": [1, 2, 4]}`, the default of the suite file's `ablations:`) and `kind` ("window", "attention" or
"recurrent"; default: from its `fixed_window` and `recurrent` flags). Its config dataclass (a subclass of
`tinylm.LMConfig`) is its `config_class`, or the annotation of its `__init__`'s `config`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.errors import UsageError
from tinylm.models.base import LanguageModel, LMConfig

ENTRY_POINT_GROUP = "tinylm.models"
KINDS = ("window", "attention", "recurrent")
PALETTE = ("#9467bd", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39")
"""Colours for plugins that name none (picked by name; none of them is a built-in model's)."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class ModelSource:
    """Where a plugin model's class came from; saved as the `plugin:` section of each of its runs' config.yaml."""

    spec: str
    """How it was named: `path/to/file.py:Class`, `package.module:Class`, or the entry point's `module:Class`."""
    origin: str
    """file | module | entry point."""
    file: str
    """The source file that defines the class (absolute)."""
    sha256: str
    """The digest of that file when the class was loaded."""
    package: str = ""
    """An entry point's distribution and version (e.g. `tinylm-gated-conv 0.1.0`)."""

    def where(self) -> str:
        """The place to restore, in words."""
        if self.origin == "entry point":
            return f"the package {self.package.split()[0]} (entry point {self.spec})"
        return f"{self.file}" if self.origin == "file" else f"the module {self.spec.split(':')[0]} ({self.file})"

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin class with what the registry needs of it."""

    name: str
    config: type[LMConfig]
    model: type[LanguageModel]
    color: str
    ablation: str | None
    ablation_values: tuple[Any, ...]
    kind: str
    source: ModelSource


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_spec(text: str) -> bool:
    """True for `something:Class` (a file or module and a class), as opposed to a registered name."""
    left, sep, right = text.rpartition(":")
    return bool(sep and left and right.isidentifier())


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """{name: entry point} of the installed packages' models (none imported)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _import_file(path: Path, spec: str) -> Any:
    """Import a user's .py file as a module of its own (registered in sys.modules: dataclasses need it)."""
    if not path.is_file():
        raise UsageError(f"model '{spec}': there is no file {path}; give path/to/file.py:ClassName")
    stem = re.sub(r"[^0-9a-zA-Z_]", "_", path.stem)
    name = f"tinylm_plugin_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"model '{spec}': {path} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error is theirs to fix, told in one line
        del sys.modules[name]
        raise UsageError(f"model '{spec}': importing {path} failed: {describe_error(e)}") from None
    return module


def describe_error(e: BaseException) -> str:
    """An exception raised in the user's code as one line with its file and line."""
    tb = e.__traceback__
    where = ""
    while tb is not None:
        where = f" ({tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno})"
        tb = tb.tb_next
    if isinstance(e, SyntaxError):
        where = f" ({e.filename}, line {e.lineno})"
        return f"SyntaxError: {e.msg}{where}"
    return f"{type(e).__name__}: {e}{where}"


def _import_module(module: str, spec: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise UsageError(f"model '{spec}': no module named {module}; install the package that provides it, or "
                             "give path/to/file.py:ClassName") from None
        raise UsageError(f"model '{spec}': importing {module} failed: {describe_error(e)}") from None
    except Exception as e:
        raise UsageError(f"model '{spec}': importing {module} failed: {describe_error(e)}") from None


def load_class(spec: str) -> tuple[type, str, Path]:
    """(class, origin, its source file) named by `file.py:Class` or `package.module:Class`."""
    where, _, cls_name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module, origin = _import_file(Path(where).expanduser().resolve(), spec), "file"
    else:
        module, origin = _import_module(where, spec), "module"
    cls = getattr(module, cls_name, None)
    if cls is None:
        defined = sorted(n for n, v in vars(module).items()
                         if inspect.isclass(v) and issubclass(v, LanguageModel) and v is not LanguageModel)
        found = f"; it defines {', '.join(defined)}" if defined else "; it defines no tinylm.LanguageModel subclass"
        raise UsageError(f"model '{spec}': {where} has no class {cls_name}{found}")
    return cls, origin, Path(inspect.getfile(cls)).resolve()


def config_class_of(cls: type[LanguageModel], spec: str) -> type[LMConfig]:
    """A plugin's config dataclass: its `config_class`, else the annotation of `__init__`'s `config`."""
    config = cls.__dict__.get("config_class") or getattr(cls, "config_class", None)
    if config is None:
        try:
            config = typing.get_type_hints(cls.__init__).get("config")
        except Exception:  # unresolvable annotations: told below as a missing config class
            config = None
    if not (inspect.isclass(config) and issubclass(config, LMConfig) and dataclasses.is_dataclass(config)):
        raise UsageError(f"model '{spec}': {cls.__name__} needs its config dataclass, a subclass of tinylm.LMConfig: "
                         "set `config_class = MyConfig` on the class, or annotate `def __init__(self, config: "
                         "MyConfig)`")
    return config


def _kind(cls: type[LanguageModel], spec: str) -> str:
    """The declared kind (and the flags it implies, set on the class), or the one its flags say."""
    declared = cls.__dict__.get("kind")
    if declared is None:
        return "recurrent" if cls.recurrent else "window" if cls.fixed_window else "attention"
    if declared not in KINDS:
        raise UsageError(f"model '{spec}': kind must be one of {', '.join(KINDS)} (got {declared!r})")
    cls.fixed_window, cls.recurrent = declared == "window", declared == "recurrent"
    return str(declared)


def _name(cls: type[LanguageModel], spec: str) -> str:
    name = cls.__dict__.get("name") or cls.__name__.lower()
    if not isinstance(name, str) or not NAME.match(name):
        raise UsageError(f"model '{spec}': its name {name!r} must be lower-case letters, digits, '-' and '_' (at "
                         "most 40, a letter or digit first): set `name = \"my-model\"` on the class")
    return name


def make_plugin(cls: Any, spec: str, origin: str, file: Path, package: str = "") -> Plugin:
    """Check a class against the plugin contract's declarations and describe it for the registry."""
    if not (inspect.isclass(cls) and issubclass(cls, LanguageModel)):
        raise UsageError(f"model '{spec}': {getattr(cls, '__name__', cls)!s} is not a subclass of "
                         "tinylm.LanguageModel; subclass it (see docs: Add your own model)")
    name, config = _name(cls, spec), config_class_of(cls, spec)
    ablation, values = cls.__dict__.get("ablation"), ()
    if isinstance(ablation, dict) and len(ablation) == 1 and isinstance(next(iter(ablation.values())), list):
        (ablation, values), = ablation.items()
    if ablation is not None and ablation not in {f.name for f in dataclasses.fields(config)}:
        raise UsageError(f"model '{spec}': ablation {ablation!r} must be a field of {config.__name__}, or one field "
                         "with its values, e.g. {\"n_layers\": [1, 2, 4]}")
    color = cls.__dict__.get("color") or PALETTE[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(PALETTE)]
    source = ModelSource(spec, origin, str(file), sha256_of(file), package)
    return Plugin(name, config, cls, str(color), ablation, tuple(values), _kind(cls, spec), source)


def load_spec(spec: str) -> Plugin:
    """The plugin named by `file.py:Class` or `package.module:Class`."""
    cls, origin, file = load_class(spec)
    return make_plugin(cls, spec, origin, file)


def load_entry_point(ep: importlib.metadata.EntryPoint) -> Plugin:
    """The plugin an installed package names in the `tinylm.models` group."""
    package = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
    try:
        cls = ep.load()
    except Exception as e:  # the package's code: told in one line
        raise UsageError(f"model '{ep.name}' (entry point {ep.value} of {package or 'an installed package'}) failed "
                         f"to load: {describe_error(e)}") from None
    plugin = make_plugin(cls, ep.value, "entry point", Path(inspect.getfile(cls)).resolve(), package)
    if plugin.name != ep.name:
        plugin = dataclasses.replace(plugin, name=ep.name)
    return plugin


def load_saved(name: str, saved: ModelSource, where: str) -> Plugin:
    """The plugin a run was trained with, from its config.yaml's `plugin:` section: from the file it was in, else
    from its spec; an error naming what to restore or install where neither is there."""
    try:
        if saved.origin == "entry point":
            ep = entry_points().get(name)
            if ep is not None:
                return load_entry_point(ep)
            cls, _, file = load_class(saved.spec)
            return make_plugin(cls, saved.spec, "entry point", file, saved.package)
        if saved.origin == "file" and Path(saved.file).is_file():
            cls, _, _ = load_class(f"{saved.file}:{saved.spec.rpartition(':')[2]}")
            return make_plugin(cls, saved.spec, "file", Path(saved.file))
        return load_spec(saved.spec)
    except UsageError as e:
        install = (f"install {saved.package.split()[0]} (pip install {saved.package.split()[0]})"
                   if saved.origin == "entry point" else f"restore {saved.file}")
        raise UsageError(f"{where}: model '{name}' came from {saved.where()}, which cannot be loaded now: "
                         f"{install} ({e})") from None


def saved_source(values: Any, where: str) -> ModelSource:
    """A config.yaml's `plugin:` section, checked."""
    fields = [f.name for f in dataclasses.fields(ModelSource)]
    if not isinstance(values, dict) or not {"spec", "origin", "file", "sha256"} <= set(values) or \
            not set(values) <= set(fields):
        raise UsageError(f"{where} plugin must be a mapping with spec, origin, file and sha256 (and package)")
    return ModelSource(**{k: str(v) for k, v in values.items()})
