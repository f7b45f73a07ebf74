"""Export the JSON Schema of every topic's event for non-Python producers.

The exported files are checked in under ``libs/common/schemas/`` and a test
fails when they differ from what the code would export, so the contract a
Java or Go producer reads can never drift from what consumers validate.

Run ``rtml-export-schemas`` after changing an event; ``--check`` only compares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from rtml_common.serde import EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER
from rtml_common.topics import TOPICS, TopicSpec

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schemas"


def schema_for(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema of a topic's records, annotated with its Kafka contract."""
    schema = spec.event_type.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:rtml:schema:{spec.name}:{spec.event_type.schema_version}"
    schema["x-rtml"] = {
        "topic": spec.name,
        "dead_letter_topic": spec.dead_letter,
        "partition_key": spec.key_field,
        "schema_version": spec.event_type.schema_version,
        "headers": {
            SCHEMA_VERSION_HEADER: spec.event_type.schema_version,
            EVENT_TYPE_HEADER: spec.event_type.__name__,
        },
    }
    return schema


def render(schema: dict[str, Any]) -> bytes:
    """Stable, diff-friendly JSON text."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def expected_files() -> dict[str, bytes]:
    """File name -> content for every topic's schema."""
    return {f"{name}.schema.json": render(schema_for(spec)) for name, spec in TOPICS.items()}


def stale_files(directory: Path) -> list[str]:
    """Names of schema files that are missing, outdated or no longer exported."""
    expected = expected_files()
    stale = [
        name
        for name, content in expected.items()
        if not (directory / name).is_file() or (directory / name).read_bytes() != content
    ]
    stale += [p.name for p in directory.glob("*.schema.json") if p.name not in expected]
    return sorted(stale)


def write(directory: Path) -> list[str]:
    """Write every schema file; remove ones for topics that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for name, content in expected.items():
        (directory / name).write_bytes(content)
    for path in directory.glob("*.schema.json"):
        if path.name not in expected:
            path.unlink()
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="output directory")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
