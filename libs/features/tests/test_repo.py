"""Feature repos: a folder of .py files loaded as one package, with precise errors."""

from __future__ import annotations

import doctest
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rtml_features.repo
from rtml_features.baseline import BASELINE, get_feature_set
from rtml_features.extended import EXTENDED
from rtml_features.repo import (
    FEATURE_REPO_ENV,
    HANDBOOK_REPO,
    MODULE_PREFIX,
    RepoError,
    configured_repo,
    load_repo,
    module_name,
)

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    return folder


def _repo_modules(folder: Path) -> list[str]:
    package = module_name(folder)
    return [n for n in sys.modules if n == package or n.startswith(package + ".")]


def _error(folder: Path) -> str:
    with pytest.raises(RepoError) as caught:
        load_repo(folder)
    assert not _repo_modules(folder), "a failed load leaves nothing imported"
    return str(caught.value)


def test_the_payments_example_loads_with_its_schema_and_32_features() -> None:
    repo = load_repo(PAYMENTS_REPO)
    payments = repo.feature_sets["payments"]
    assert len(payments.names) == 32
    assert payments.schema is repo.schemas["payment"]
    assert repo.sources["payments"] == "features.py"
    assert repo.schema_sources["payment"] == "schema.py"
    # the handbook set features.py extends is collected once, as the very same object
    assert repo.feature_sets["baseline"] is BASELINE
    assert repo.imported == {"baseline": "rtml_features.baseline"}
    assert sorted(repo.feature_sets) == ["baseline", "payments"]
    assert list(repo.schemas) == ["payment"]
    described = repo.describe()
    assert described["version"] == repo.version and len(repo.version) == 12
    assert {s["name"]: s["features"] for s in described["feature_sets"]} == {
        "baseline": 15, "payments": 32}
    assert _repo_modules(PAYMENTS_REPO), "a loaded repo stays imported (lazy imports work)"


def test_the_shipped_handbook_repo_declares_baseline_and_extended_unchanged() -> None:
    """The declarations moved into the shipped repo; models were trained under these."""
    repo = load_repo(HANDBOOK_REPO)
    assert {n: fs.version for n, fs in repo.feature_sets.items()} == {
        "baseline": "9476c2716c3a", "extended": "f1c4ba41ee34"}
    assert BASELINE.version == "9476c2716c3a" and EXTENDED.version == "f1c4ba41ee34"
    assert repo.feature_sets["baseline"] == BASELINE  # a fresh load: equal, not the same
    assert repo.sources == {"baseline": "baseline.py", "extended": "extended.py"}
    assert list(repo.schemas) == ["transaction"]
    assert (HANDBOOK_REPO / "baseline.py").is_file()


def test_a_shipped_repo_file_is_package_data_of_the_wheel() -> None:
    text = (Path(rtml_features.repo.__file__).parents[1] / "pyproject.toml").read_text()
    assert '"repos/*/*.py"' in text


def test_the_version_hashes_definitions_not_file_bytes(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    first = load_repo(copy)
    assert first.version == load_repo(PAYMENTS_REPO).version, "the folder is not hashed"
    features = copy / "features.py"
    features.write_text("# a comment changes no definition\n" + features.read_text())
    assert load_repo(copy).version == first.version
    assert not (copy / "__pycache__").exists(), "sources are compiled, never cached"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("old", "new"), [
    # same length on purpose: a bytecode cache keyed by mtime and size would miss it
    ('Field("amount", FieldType.NUMBER', 'Field("amount", FieldType.INTEGER'),
    ('"online_services", "gaming")', '"online_services", "gaming", "crypto")'),
])
def test_a_schema_change_changes_the_repo_and_feature_set_versions(
        tmp_path: Path, old: str, new: str) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    before = load_repo(copy)
    _edit(copy / "schema.py", old, new)
    after = load_repo(copy)
    assert after.version != before.version
    assert after.schemas["payment"].version != before.schemas["payment"].version
    assert after.feature_sets["payments"].version != before.feature_sets["payments"].version
    assert after.feature_sets["baseline"].version == before.feature_sets["baseline"].version


def test_a_bound_changes_the_repo_version_but_not_the_feature_values(tmp_path: Path) -> None:
    """Bounds are validation, not computation: the set's version (its Redis keys) stays."""
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    before = load_repo(copy)
    _edit(copy / "schema.py", "max_length=45", "max_length=64")
    after = load_repo(copy)
    assert after.version != before.version
    assert after.feature_sets["payments"].version == before.feature_sets["payments"].version


def test_a_syntax_error_names_its_file_and_line(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", features="""
        from rtml_features.baseline import BASELINE

        SET = BASELINE
        broken = (
    """)
    assert _error(repo).startswith("features.py:4: SyntaxError: '(' was never closed")


def test_a_definition_error_names_the_line_of_the_repo_it_went_through(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", features="""
        from datetime import timedelta

        from rtml_features.definitions import Agg, Entity, FeatureSet, WindowAggregate

        CARD = Entity("card", key="customer_id")
        SET = FeatureSet("odd", [
            WindowAggregate("card_nb", CARD, Agg.COUNT, timedelta(days=-1)),
        ])
    """)
    assert _error(repo).startswith(
        "features.py:7: DefinitionError: card_nb: window must be positive")


def test_an_unknown_field_names_the_declaring_line_and_the_schema(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    _edit(copy / "features.py", 'field="device_id"),', 'field="device"),')
    lines = (copy / "features.py").read_text().splitlines()
    declared = next(i for i, line in enumerate(lines, 1) if "PAYMENTS = FeatureSet(" in line)
    message = _error(copy)
    assert message.startswith(f"features.py:{declared}: DefinitionError: "
                              "card_distinct_devices_1day: field 'device' is not declared")
    assert "schema 'payment'" in message


def test_an_error_in_a_sibling_names_the_sibling(tmp_path: Path) -> None:
    """features.py imports schema.py, which fails: the innermost repo line is schema.py's."""
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    _edit(copy / "schema.py", 'event_time="event_time"', 'event_time="customer_id"')
    lines = (copy / "schema.py").read_text().splitlines()
    declared = next(i for i, line in enumerate(lines, 1) if "PAYMENT = EventSchema(" in line)
    assert _error(copy).startswith(f"schema.py:{declared}: SchemaError: schema 'payment': "
                                   "event_time 'customer_id' must be a timestamp field")


def test_a_missing_sibling_is_named(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", features="""
        '''Features reading a schema file that is not there.'''

        from .schemas import PAYMENT
    """)
    assert _error(repo) == ("features.py:3: ModuleNotFoundError: No module named '.schemas' "
                            "(the repo has no schemas.py)")


def test_an_absolute_import_of_a_sibling_says_to_import_it_relatively(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    _edit(copy / "features.py", "from .schema import", "from schema import")
    message = _error(copy)
    assert message.startswith("features.py:")
    assert message.endswith("ModuleNotFoundError: No module named 'schema' (a file of the "
                            "repo: import it relatively, from .schema import ...)")


def test_any_exception_becomes_a_located_repo_error(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", a="""
        from rtml_features.baseline import BASELINE

        def helper():
            return undefined_name

        SET = helper()
    """)
    assert _error(repo) == "a.py:4: NameError: name 'undefined_name' is not defined"


def test_two_sets_of_one_name_in_two_files_name_both(tmp_path: Path) -> None:
    declaration = """
        from rtml_features.baseline import BASELINE
        from rtml_features.definitions import FeatureSet

        {var} = FeatureSet("velocity", BASELINE.features[:{n}])
    """
    repo = _write(tmp_path / "repo", a=declaration.format(var="FIRST", n=2),
                  b=declaration.format(var="SECOND", n=3))
    assert _error(repo) == (
        "b.py:4: feature set 'velocity' is declared twice with different definitions: "
        "SECOND in b.py:4 and FIRST in a.py:4 (rename one)")


def test_two_schemas_of_one_name_name_both_files(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    shutil.copy(copy / "schema.py", copy / "schema2.py")
    _edit(copy / "schema2.py", 'topic="transactions"', 'topic="payments"')
    message = _error(copy)
    assert message.startswith("schema2.py:")
    assert "schema 'payment' is declared twice" in message and "schema.py:" in message


def test_the_same_object_in_two_files_is_collected_once(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", a="""
        from rtml_features.baseline import BASELINE
        from rtml_features.definitions import FeatureSet

        VELOCITY = FeatureSet("velocity", BASELINE.features[:2])
        _PRIVATE = FeatureSet("private", BASELINE.features[:1])
    """, b="""
        from .a import VELOCITY as AGAIN
    """)
    loaded = load_repo(repo)
    assert sorted(loaded.feature_sets) == ["baseline", "velocity"]
    assert loaded.sources["velocity"] == "a.py"


@pytest.mark.parametrize(("setup", "expected"), [
    (lambda p: p, "feature repo not found"),
    (lambda p: (p.mkdir(), p)[1], "no .py files"),
    (lambda p: (p.mkdir(), (p / "_helpers.py").write_text("X = 1\n"), p)[2], "no .py files"),
    (lambda p: (p.parent.mkdir(exist_ok=True), p.write_text(""), p)[2], "not a file"),
])
def test_a_folder_that_is_no_repo_says_why(tmp_path: Path, setup, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = setup(tmp_path / "repo")
    message = _error(path)
    assert message.startswith(f"{path.resolve() if path.exists() else path}: ")
    assert expected in message


def test_a_repo_of_schemas_only_has_no_feature_set(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PAYMENTS_REPO / "schema.py", repo / "schema.py")
    message = _error(repo)
    assert "no feature set found" in message and "schema.py" in message


def test_the_configured_repo_selects_get_feature_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_REPO_ENV, raising=False)
    assert configured_repo().path == HANDBOOK_REPO
    with pytest.raises(KeyError, match="unknown feature set 'payments'; known: baseline, "
                                       "extended"):
        get_feature_set("payments")
    copy = shutil.copytree(PAYMENTS_REPO, tmp_path / "payments")
    monkeypatch.setenv(FEATURE_REPO_ENV, str(copy))
    payments = get_feature_set("payments")
    assert len(payments.names) == 32 and payments.schema.name == "payment"
    assert get_feature_set("payments") is payments, "loaded once per folder and process"
    # the handbook's names resolve whatever the repo
    assert get_feature_set("baseline") is BASELINE
    assert get_feature_set("extended") is EXTENDED
    with pytest.raises(KeyError, match="known: baseline, extended, payments"):
        get_feature_set("payment")


def test_a_bad_configured_repo_fails_with_its_located_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _write(tmp_path / "repo", features="x = (\n")
    monkeypatch.setenv(FEATURE_REPO_ENV, str(repo))
    with pytest.raises(RepoError, match=r"^features.py:1: SyntaxError"):
        get_feature_set("baseline")


def test_a_repo_may_not_redefine_a_handbook_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _write(tmp_path / "repo", mine="""
        import rtml_features.baseline as handbook
        from rtml_features.definitions import FeatureSet

        MINE = FeatureSet("baseline", handbook.BASELINE.features[:3])
    """)
    monkeypatch.setenv(FEATURE_REPO_ENV, str(repo))
    with pytest.raises(RepoError, match=r"^mine.py: feature set 'baseline' .* would shadow"):
        configured_repo()


def test_a_redefinition_beside_an_import_names_the_import_line(tmp_path: Path) -> None:
    repo = _write(tmp_path / "repo", mine="""
        from rtml_features.baseline import BASELINE
        from rtml_features.definitions import FeatureSet

        MINE = FeatureSet("baseline", BASELINE.features[:3])
    """)
    assert _error(repo) == ("mine.py:4: feature set 'baseline' is declared twice with "
                            "different definitions: MINE in mine.py:4 and BASELINE in "
                            "mine.py:1 (rename one)")


def test_a_copy_of_the_handbook_repo_is_a_valid_repo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The way to start a repo of one's own: copy the shipped one and edit it."""
    copy = shutil.copytree(HANDBOOK_REPO, tmp_path / "mine")
    monkeypatch.setenv(FEATURE_REPO_ENV, str(copy))
    assert configured_repo().feature_sets["extended"].version == "f1c4ba41ee34"
    assert get_feature_set("extended") is EXTENDED


def test_the_selection_reaches_a_fresh_process(tmp_path: Path) -> None:
    """A service reads the variable at start: nothing to register, no import order."""
    code = ("from rtml_features.baseline import get_feature_set\n"
            "print(len(get_feature_set('payments').names))")
    env = {"PATH": "/usr/bin:/bin", FEATURE_REPO_ENV: str(PAYMENTS_REPO)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env).stdout
    assert out.split() == ["32"]


def test_the_module_names_are_per_folder(tmp_path: Path) -> None:
    copy = shutil.copytree(PAYMENTS_REPO, tmp_path / "payments")
    assert module_name(Path(copy)) != module_name(PAYMENTS_REPO)
    assert module_name(Path(copy)).startswith(MODULE_PREFIX)


def test_docstring_examples() -> None:
    result = doctest.testmod(rtml_features.repo, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
