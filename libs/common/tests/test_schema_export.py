"""The checked-in JSON Schemas must equal what the code exports, and must
accept what our producers actually write."""

from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest

from rtml_common.events import Transaction
from rtml_common.schema_export import DEFAULT_DIR, main, stale_files, write
from rtml_common.serde import encode
from rtml_common.topics import TOPICS


def test_checked_in_schemas_match_the_code() -> None:
    stale = stale_files(DEFAULT_DIR)
    assert stale == [], f"run `rtml-export-schemas` to refresh: {stale}"


def test_drift_between_code_and_file_is_detected(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale_files(tmp_path) == []
    target = tmp_path / "transactions.schema.json"
    target.write_bytes(target.read_bytes().replace(b'"amount"', b'"amt"'))
    (tmp_path / "retired.schema.json").write_text("{}")
    assert stale_files(tmp_path) == ["retired.schema.json", "transactions.schema.json"]
    assert main(["--check", "--dir", str(tmp_path)]) == 1


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_exported_schema_is_valid_json_schema(topic: str) -> None:
    schema = orjson.loads((DEFAULT_DIR / f"{topic}.schema.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-rtml"]["topic"] == topic


def test_schema_accepts_encoded_event_and_rejects_bad_one() -> None:
    schema = orjson.loads((DEFAULT_DIR / "transactions.schema.json").read_bytes())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    good = orjson.loads(encode(Transaction(
        transaction_id="1", event_time=datetime(2018, 4, 1, tzinfo=UTC), customer_id="c",
        amount=1.0)))
    validator.validate(good)
    bad = dict(good, amount=-5, extra_field=1)
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert any("-5 is less than the minimum of 0" in m for m in messages)
    assert any("extra_field" in m for m in messages)
