"""``rtml features``: check a feature repo before a service loads it, and list what it declares.

``validate`` loads the repo exactly as the services do (:func:`rtml_features.repo.load_repo`)
and prints every schema and feature set with its version and size, or the error at its
file and line (exit code 2), so a broken repo is caught in CI or at the desk rather than
by a service refusing to start. ``list`` prints the features of each set.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rtml_features.definitions import LIFETIME
from rtml_features.repo import (
    FEATURE_REPO_ENV,
    FeatureRepo,
    RepoError,
    check_selectable,
    configured_repo_path,
    load_repo,
)
from rtml_localstack.console import make_console

app = typer.Typer(help="Check and list feature repos (schemas and feature sets).",
                  no_args_is_help=True)
console = make_console()
#: Row kinds that read an event field (the others read the event time).
FIELD_KINDS = ("field", "category_code", "equals")

REPO_OPTION = typer.Option(
    None, "--repo", help=f"Feature repo folder (default: ${FEATURE_REPO_ENV}, else the "
                         "handbook repo shipped with rtml_features).")


def _load(repo: Path | None) -> FeatureRepo:
    """The repo as a service would accept it, or the error printed and exit code 2."""
    try:
        return check_selectable(load_repo(repo if repo is not None else configured_repo_path()))
    except RepoError as error:
        make_console(stderr=True).print(f"[red]error:[/red] {error}", markup=True,
                                        highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def repo_table(repo: FeatureRepo) -> Table:
    """One row per schema and feature set: kind, name, version, size, file."""
    table = Table(title=f"{repo.path} (version {repo.version})", title_justify="left")
    for column in ("kind", "name", "version", "size", "file"):
        table.add_column(column)
    for schema in repo.schemas.values():
        table.add_row("schema", schema.name, schema.version, f"{len(schema.fields)} fields",
                      _file(repo.schema_sources.get(schema.name),
                            repo.schemas_imported.get(schema.name)))
    for feature_set in repo.feature_sets.values():
        table.add_row("feature set", feature_set.name, feature_set.version,
                      f"{len(feature_set.names)} features",
                      _file(repo.sources.get(feature_set.name),
                            repo.imported.get(feature_set.name)))
    return table


def _file(file: str | None, imported_from: str | None) -> str:
    return f"{file} (from {imported_from})" if imported_from else (file or "")


@app.command("validate")
def validate_command(repo: Path | None = REPO_OPTION) -> None:
    """Load a feature repo and print its schemas and feature sets, or the error (exit 2)."""
    loaded = _load(repo)
    console.print(repo_table(loaded), soft_wrap=True)
    console.print(f"ok: {len(loaded.schemas)} schema(s), {len(loaded.feature_sets)} feature "
                  f"set(s)", highlight=False)


@app.command("list")
def list_command(repo: Path | None = REPO_OPTION,
                 feature_set: str | None = typer.Option(
                     None, "--set", help="Only this feature set.")) -> None:
    """List the features of each set of a repo (name, kind), in the model's input order."""
    loaded = _load(repo)
    sets = list(loaded.feature_sets.values())
    if feature_set is not None:
        if feature_set not in loaded.feature_sets:
            known = ", ".join(loaded.feature_sets)
            make_console(stderr=True).print(
                f"error: no feature set {feature_set!r} in {loaded.path}; known: {known}",
                highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(2)
        sets = [loaded.feature_sets[feature_set]]
    for one in sets:
        table = Table(title=f"{one.name} {one.version} ({len(one.names)} features over "
                            f"{one.schema.name!r})", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("feature")
        table.add_column("definition")
        for index, described in enumerate(one.describe()):
            table.add_row(str(index), described["name"], _summary(described))
        console.print(table, soft_wrap=True)


def _summary(described: dict[str, object]) -> str:
    """A short reading of a feature's canonical description."""
    if described["type"] == "row":
        reads = f" {described['field']}" if described["kind"] in FIELD_KINDS else ""
        value = f" == {described['value']!r}" if "value" in described else ""
        return f"row {described['kind']}{reads}{value}"
    if described["type"] == "window":
        field = f"({described['field']})" if described.get("field") else ""
        window = _duration(described["window_s"])
        over = "over its lifetime" if window == "lifetime" else f"over {window}"
        delay = described.get("label_delay_s")
        shifted = f", {_duration(delay)} label delay" if delay else ""
        return f"{described['agg']}{field} per {described['entity']} {over}{shifted}"
    numerator, denominator = described["numerator"], described["denominator"]
    assert isinstance(numerator, dict) and isinstance(denominator, dict)
    return f"ratio {numerator['name']} / {denominator['name']}"


def _duration(seconds: object) -> str:
    """``30d``, ``1h``, ``10min``, ``45s`` or ``lifetime``."""
    assert isinstance(seconds, int | float)
    if seconds >= LIFETIME.total_seconds():
        return "lifetime"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
