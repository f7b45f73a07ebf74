"""Feature repos: a team's event schemas and feature sets in a folder outside the package.

A feature repo is a folder of ``.py`` files (the shape Feast's feature repos made
familiar). The platform imports them as *one* package, so a file reads its
siblings with relative imports (``from .schema import PAYMENT``), and collects
every module-level :class:`~rtml_common.schema.EventSchema` and
:class:`~rtml_features.definitions.FeatureSet` (names starting with ``_`` are
private and skipped). An object a file imports from another repo file, or from
``rtml_features`` (the handbook's ``BASELINE``), is collected once.

Nothing is registered by side effect and nothing of the repo is read as text:
the declarations *are* the Python objects the engines interpret. Files starting
with ``_`` (``__init__.py``, helpers) are not imported unless a repo file imports
them. Sources are compiled afresh at each load (no ``__pycache__`` is read or
written), so an edited file is always what a load sees.

Errors are precise: anything raised while importing (a syntax error, a
:class:`~rtml_features.definitions.DefinitionError`, an unknown field, a missing
sibling, any exception) becomes a :class:`RepoError` whose message starts with
``<file>:<line>: `` — the file relative to the repo and the innermost line of
the repo the error went through — then the exception's type and message.

:attr:`FeatureRepo.version` hashes the canonical descriptions of the repo's
schemas and feature sets (not file bytes: comments, docstrings and the layout of
the files do not change it).

The repo a process uses is :func:`configured_repo`: the folder named by
``RTML_FEATURE_REPO``, else the handbook repo shipped with this package
(:data:`HANDBOOK_REPO`, declaring ``baseline`` and ``extended``).

>>> repo = load_repo(HANDBOOK_REPO)
>>> sorted(repo.feature_sets), sorted(repo.schemas)
(['baseline', 'extended'], ['transaction'])
>>> repo.feature_sets["baseline"].version, repo.sources["baseline"]
('9476c2716c3a', 'baseline.py')
>>> len(repo.version)
12
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
import traceback
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from rtml_common.schema import EventSchema
from rtml_features.definitions import FeatureSet

#: The folder of the repo every process uses unless it says otherwise (default: the handbook).
FEATURE_REPO_ENV = "RTML_FEATURE_REPO"
#: The example repo shipped with the package: the handbook's ``baseline`` and ``extended``.
HANDBOOK_REPO = Path(__file__).resolve().parent / "repos" / "handbook"
#: Prefix of the synthetic package a repo is imported as (a hash of its folder follows).
MODULE_PREFIX = "rtml_feature_repo_"

#: Loads of one thread nest (a repo importing ``rtml_features.baseline`` loads the handbook).
_LOCK = threading.RLock()


class RepoError(ValueError):
    """A feature repo cannot be loaded; the message says where (``file.py:line: ``) and why."""


@dataclass(frozen=True)
class FeatureRepo:
    """The schemas and feature sets one repo folder declares, and the repo's version."""

    path: Path
    schemas: dict[str, EventSchema]
    feature_sets: dict[str, FeatureSet]
    #: Where each schema and feature set was found: name -> file relative to the repo
    #: (the first file, in import-completion order, holding it at module level).
    sources: dict[str, str] = field(default_factory=dict)
    schema_sources: dict[str, str] = field(default_factory=dict)
    #: Those a repo file imported from a module outside the repo: name -> that module
    #: (``baseline`` -> ``rtml_features.baseline`` when a file extends the handbook's set).
    imported: dict[str, str] = field(default_factory=dict)
    schemas_imported: dict[str, str] = field(default_factory=dict)
    #: The imported files: stem -> module (``HANDBOOK.modules["baseline"].CUSTOMER``).
    modules: dict[str, types.ModuleType] = field(default_factory=dict, repr=False,
                                                 compare=False)

    def canonical(self) -> dict[str, Any]:
        """What the version hashes: every schema's and feature set's canonical description."""
        return {
            "schemas": {name: schema.describe() for name, schema in self.schemas.items()},
            "feature_sets": {
                name: {"version": fs.version, "features": fs.describe(),
                       "schema": fs.schema.describe(), "source_topic": fs.source_topic,
                       "label_topic": fs.label_topic}
                for name, fs in self.feature_sets.items()},
        }

    @property
    def version(self) -> str:
        """12 hex chars of the SHA-256 of :meth:`canonical`."""
        text = json.dumps(self.canonical(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: path, version, each schema and feature set with its version."""
        return {
            "path": str(self.path),
            "version": self.version,
            "schemas": [{"name": s.name, "version": s.version, "topic": s.topic,
                         "fields": len(s.fields), "file": self.schema_sources.get(s.name),
                         "imported_from": self.schemas_imported.get(s.name)}
                        for s in self.schemas.values()],
            "feature_sets": [{"name": fs.name, "version": fs.version,
                              "features": len(fs.names), "schema": fs.schema.name,
                              "file": self.sources.get(fs.name),
                              "imported_from": self.imported.get(fs.name)}
                             for fs in self.feature_sets.values()],
        }


def module_name(path: Path) -> str:
    """The synthetic package name of the repo at ``path`` (stable per resolved folder)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return MODULE_PREFIX + digest


def repo_files(path: Path) -> list[Path]:
    """The files a load imports: ``*.py`` not starting with ``_``, by name."""
    return sorted(p for p in path.glob("*.py") if p.is_file() and not p.name.startswith("_"))


class _FileLoader(importlib.machinery.SourceFileLoader):
    """Compiles the source at each load (no bytecode cache: an edit within the same second
    and size would otherwise be read from a stale ``.pyc``) and records completion order."""

    def __init__(self, fullname: str, path: str, finished: list[str]) -> None:
        super().__init__(fullname, path)
        self._finished = finished

    def get_code(self, fullname: str) -> types.CodeType:
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)

    def exec_module(self, module: types.ModuleType) -> None:
        super().exec_module(module)
        self._finished.append(module.__name__)


class _RepoFinder(importlib.abc.MetaPathFinder):
    """Finds the repo's files for the synthetic package, while a load runs."""

    def __init__(self, package: str, folder: Path, finished: list[str]) -> None:
        self._package = package
        self._folder = folder
        self._finished = finished

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, dot, stem = fullname.rpartition(".")
        if package != self._package or not dot:
            return None
        source = self._folder / f"{stem}.py"
        if source.is_file():
            loader = _FileLoader(fullname, str(source), self._finished)
            return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        if (self._folder / stem).is_dir():
            return None  # a helper package inside the repo: the usual machinery
        raise ModuleNotFoundError(f"No module named {'.' + stem!r} (the repo has no {stem}.py)",
                                  name=fullname)


def _drop_modules(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def _relative(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder).as_posix()
    except (ValueError, OSError):
        return None


def _located(error: BaseException, folder: Path, importing: Path) -> RepoError:
    """``error`` as a RepoError: ``file:line: Type: message`` at its innermost repo line."""
    where: tuple[str, int] | None = None
    message = str(error)
    if isinstance(error, SyntaxError) and error.filename:
        relative = _relative(Path(error.filename), folder)
        if relative is not None:
            where = (relative, error.lineno or 1)
            message = error.msg
    if where is None:
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            relative = _relative(Path(frame.filename), folder)
            if relative is not None:
                where = (relative, frame.lineno or 1)
                break
    if where is None:  # raised before any line of the repo ran (an unreadable file)
        where = (importing.name, 1)
    if (isinstance(error, ModuleNotFoundError) and error.name
            and (folder / f"{error.name.partition('.')[0]}.py").is_file()):
        message += (f" (a file of the repo: import it relatively, "
                    f"from .{error.name} import ...)")
    return RepoError(f"{where[0]}:{where[1]}: {type(error).__name__}: {message}")


def _collect(repo_modules: list[tuple[str, types.ModuleType]], folder: Path,
             package: str) -> FeatureRepo:
    """The module-level schemas and sets, each object once, refusing two of one name."""
    schemas: dict[str, EventSchema] = {}
    sets: dict[str, FeatureSet] = {}
    found: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, name) -> (file, variable)
    seen: set[int] = set()
    for stem, module in repo_modules:
        for variable, value in vars(module).items():
            if variable.startswith("_") or id(value) in seen:
                continue
            into: dict[str, Any]
            if isinstance(value, FeatureSet):
                kind, name, into = "feature set", value.name, sets
            elif isinstance(value, EventSchema):
                kind, name, into = "schema", value.name, schemas
            else:
                continue
            seen.add(id(value))
            file = f"{stem}.py"
            first = found.get((kind, name))
            if first is None:
                found[(kind, name)] = (file, variable)
                into[name] = value
            elif into[name] != value:
                here = _where(folder, file, variable)
                raise RepoError(f"{here}: {kind} {name!r} is declared twice with different "
                                f"definitions: {variable} in {here} and {first[1]} in "
                                f"{_where(folder, *first)} (rename one)")
    if not sets:
        files = ", ".join(f"{stem}.py" for stem, _ in repo_modules)
        raise RepoError(f"{folder}: no feature set found (a module-level FeatureSet) in {files}")
    outside = _declared_outside(package)
    return FeatureRepo(
        path=folder, schemas=schemas, feature_sets=sets,
        sources={n: f for (k, n), (f, _) in found.items() if k == "feature set"},
        schema_sources={n: f for (k, n), (f, _) in found.items() if k == "schema"},
        imported={n: outside[id(s)] for n, s in sets.items() if id(s) in outside},
        schemas_imported={n: outside[id(s)] for n, s in schemas.items() if id(s) in outside},
        modules=dict(repo_modules))


def _where(folder: Path, file: str, variable: str) -> str:
    """``file:line`` of the module-level assignment or import binding ``variable``
    (``file`` if not found)."""
    try:
        tree = ast.parse((folder / file).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return file
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound = [(a.asname or a.name).partition(".")[0] for a in node.names]
            if variable in bound:
                return f"{file}:{node.lineno}"
        if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            return f"{file}:{node.lineno}"
    return file


def _declared_outside(package: str) -> dict[int, str]:
    """Schemas and sets held at module level by the platform's modules (``rtml_*``) other
    than the repo's own: id -> module name, a real module preferred to another repo's."""
    held: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("rtml_") or name == package or name.startswith(package + "."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, FeatureSet | EventSchema) and (
                    id(value) not in held or held[id(value)].startswith(MODULE_PREFIX)):
                held[id(value)] = name
    return held


def load_repo(path: str | os.PathLike[str]) -> FeatureRepo:
    """Import the repo at ``path`` as one package and collect its schemas and feature sets.

    A fresh import at each call (a second load of a folder replaces the first's modules
    in ``sys.modules``); on failure nothing of the repo stays imported.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise RepoError(f"{folder}: feature repo not found")
    if not folder.is_dir():
        raise RepoError(f"{folder}: a feature repo is a folder of .py files, not a file")
    folder = folder.resolve()
    files = repo_files(folder)
    if not files:
        raise RepoError(f"{folder}: no .py files (a feature repo declares its schemas and "
                        "feature sets in .py files)")
    package = module_name(folder)
    with _LOCK:
        _drop_modules(package)
        finished: list[str] = []
        finder = _RepoFinder(package, folder, finished)
        root = types.ModuleType(package, f"Feature repo {folder}")
        root.__path__ = [str(folder)]
        root.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
        root.__spec__.submodule_search_locations = [str(folder)]
        sys.modules[package] = root
        sys.meta_path.insert(0, finder)
        importing = files[0]
        try:
            for importing in files:
                importlib.import_module(f"{package}.{importing.stem}")
        except BaseException as error:
            _drop_modules(package)
            if isinstance(error, Exception):  # not an interrupt or an exit
                raise _located(error, folder, importing) from error
            raise
        finally:
            sys.meta_path.remove(finder)
        try:
            order = [name.rpartition(".")[2] for name in finished]
            return _collect([(stem, sys.modules[f"{package}.{stem}"]) for stem in order],
                            folder, package)
        except RepoError:
            _drop_modules(package)
            raise


def configured_repo_path() -> Path:
    """The repo folder this process uses: ``RTML_FEATURE_REPO`` (read at each call) or the
    shipped handbook repo."""
    value = os.environ.get(FEATURE_REPO_ENV)
    return Path(value).expanduser() if value else HANDBOOK_REPO


@cache
def shipped_repo() -> FeatureRepo:
    """The handbook repo shipped with the package, loaded once per process."""
    return load_repo(HANDBOOK_REPO)


def check_selectable(repo: FeatureRepo) -> FeatureRepo:
    """``repo``, if it can be the configured repo: its sets do not redefine the handbook's.

    ``baseline`` and ``extended`` stay the handbook's whatever the repo (models were
    trained and registered under those names); a copy of them, or the very objects, is fine.
    """
    handbook = shipped_repo()
    for name, feature_set in repo.feature_sets.items():
        shipped = handbook.feature_sets.get(name)
        if shipped is not None and shipped != feature_set:
            raise RepoError(f"{repo.sources[name]}: feature set {name!r} (version "
                            f"{feature_set.version}) would shadow the handbook's set of that "
                            f"name (version {shipped.version}); give it another name")
    return repo


@cache
def _loaded(folder: Path) -> FeatureRepo:
    return check_selectable(load_repo(folder))


def configured_repo() -> FeatureRepo:
    """The repo of :func:`configured_repo_path`, loaded once per folder and process.

    Its feature sets may not redefine the handbook's ``baseline`` / ``extended`` (those
    names stay the handbook's whatever the repo: models were trained under them).
    """
    folder = configured_repo_path()
    with _LOCK:  # two threads resolving a set at start load the repo once
        if folder.is_dir() and folder.resolve() == HANDBOOK_REPO:
            return shipped_repo()
        return _loaded(folder.resolve() if folder.exists() else folder)
