"""YAML for files a person or a client hands us: every surprise refused with its line.

Rule uploads (the decision service) and training parameter files (``rtml
train --params``) both read YAML written by someone else. ``yaml.safe_load``
alone accepts duplicate keys (the last one silently wins), alias bombs, and
nesting or integers deep/long enough to crash the parser. :func:`load` refuses
each of those as a :class:`YamlError` carrying the 1-based line, and every
mapping it returns is a :class:`LineDict` that remembers the line it started on,
so callers can point at the offending entry too.

>>> doc = load("name: a\\nitems:\\n  - x: 1\\n")
>>> doc["items"][0]["x"], line_of(doc["items"][0])
(1, 3)
>>> load("a: 1\\na: 2\\n")
Traceback (most recent call last):
...
rtml_common.strict_yaml.YamlError: line 2: duplicate key 'a' (first at line 1)
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deepest nesting accepted: deeper is refused before the composer's recursion
#: would hit Python's limit (a RecursionError).
MAX_YAML_DEPTH = 32
#: Longest integer accepted, in decimal digits (a 5,000-digit one hits Python's
#: int/str conversion limit).
MAX_INT_DIGITS = 30


class YamlError(ValueError):
    """The text is not acceptable YAML; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, problem: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.problem = problem
        self.line = line


class LineDict(dict[str, Any]):
    """A mapping from the YAML text that remembers its (1-based) line."""

    line: int = 0


def line_of(obj: object) -> int:
    """The line a mapping from :func:`load` started on (0 for anything else)."""
    return getattr(obj, "line", 0)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader for untrusted text: no aliases, bounded nesting, bounded integers,
    no duplicate keys, no lone surrogates.

    Aliases: ``*ref`` expansion is how YAML "billion laughs" bombs work.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data
    lines: dict[str, int] = {}
    for key_node, _ in node.value:
        key = str(loader.construct_object(key_node))
        if key in lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shorten(key)!r} (first at line {lines[key]})",
                key_node.start_mark)
        lines[key] = key_node.start_mark.line + 1
    data.update({str(k): v for k, v in loader.construct_mapping(node).items()})


def _construct_int(loader: StrictLoader, node: yaml.ScalarNode) -> int:
    """YAML's int, refused past :data:`MAX_INT_DIGITS` (hex, octal and ``1:2:3`` forms too)."""
    digits = sum(c.isalnum() for c in str(node.value))
    too_long = yaml.constructor.ConstructorError(
        None, None, f"integer longer than {MAX_INT_DIGITS} digits", node.start_mark)
    if digits > 3 * MAX_INT_DIGITS:
        raise too_long
    value: int = loader.construct_yaml_int(node)
    if value.bit_length() > MAX_INT_DIGITS * 3.33:
        raise too_long
    return value


def _construct_str(loader: StrictLoader, node: yaml.ScalarNode) -> str:
    """YAML's string, refused when it cannot be UTF-8 (a ``"\\ud800"`` escape): such a
    string would make everything it is copied into unencodable."""
    value: str = loader.construct_yaml_str(node)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise yaml.constructor.ConstructorError(
            None, None, "string with a lone surrogate (\\ud800-\\udfff) is not valid Unicode",
            node.start_mark) from None
    return value


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (for messages quoting input)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def load(text: str) -> Any:
    """The YAML document in ``text`` (mappings as :class:`LineDict`), or :class:`YamlError`."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(problem, line) from None
    except RecursionError:  # a guard behind MAX_YAML_DEPTH (e.g. deep flow scalars)
        raise YamlError("nested too deeply") from None
