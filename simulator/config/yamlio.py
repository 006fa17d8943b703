"""Safe YAML reading for scenarios and profiles: YAML 1.2 floats (`2.0e9` is a number), duplicate keys are errors."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from simulator.errors import InputError, clip

__all__ = ["ScenarioLoader", "load_yaml_text", "read_yaml_file", "copy_data", "MAX_YAML_BYTES", "MAX_DEPTH"]

_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# YAML 1.2 core-schema floats, plus the `_` digit separators YAML 1.1 allows. PyYAML's 1.1 resolver wants a dot
# and a signed exponent, so it reads `2.0e9`, `2e9` and `1e-3` as strings (only `2.0e+9` as a number).
_FLOAT_12 = re.compile(
    r"""^(?:
        [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?   # 1.  1.5  1.5e9  1.5E-3
      | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?          # .5  .5e3
      | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                 # 2e9  1e-3
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.X,
)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_duplicates(node: Node, path: str, seen: set[int]) -> None:
    """Raise on a mapping that names a key twice (PyYAML would silently keep the last value)."""
    if id(node) in seen:  # an alias: already checked where its anchor was defined
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first_at: dict[tuple[str, str], str] = {}  # (resolved tag, text) -> where: `1` and "1" differ
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else "<complex key>"
            at = f"line {key_node.start_mark.line + 1}, column {key_node.start_mark.column + 1}"
            ident = (key_node.tag, key)
            if isinstance(key_node, ScalarNode) and ident in first_at:
                raise InputError(
                    f"duplicate key '{key}' at {at} (first given at {first_at[ident]})", key=_key_path(path, key)
                )
            first_at.setdefault(ident, at)
            _check_duplicates(value_node, _key_path(path, key), seen)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{i}]", seen)


class ScenarioLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's parser when PyYAML has it) with YAML 1.2 floats (`2.0e9` and `2e9` are numbers) that
    rejects a key given twice."""

    def get_single_data(self) -> Any:
        # the node tree is checked before anything is constructed, so the error can give the full key path
        node = self.get_single_node()
        if node is None:
            return None
        _check_duplicates(node, "", set())
        return self.construct_document(node)


# Replace (not add to) the 1.1 float resolver: the first resolver whose pattern matches wins.
ScenarioLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ScenarioLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


MAX_YAML_BYTES = 256 * 2**20  # a 10 000-client scenario.resolved.yaml is about 23 MB
MAX_DEPTH = 64  # nesting of mappings and lists; libyaml's composer recurses without a limit (and can crash)
ALIAS_GROWTH = 1_000_000  # nodes aliases may add beyond those written out (an alias bomb adds billions)


def _check_shape(text: str) -> None:
    """Bound the nesting depth and what aliases expand to, from the parser's event stream (flat, no recursion),
    before anything is composed or constructed."""
    depth, written = 0, 0
    sizes: list[int] = [0]  # expanded node count of each open collection (the outer list: the document)
    open_anchor: list[str | None] = []
    anchored: dict[str, int] = {}  # anchor -> expanded size of the node it names
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            written += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise InputError(f"nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            sizes.append(1)
            open_anchor.append(event.anchor)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            size = sizes.pop()
            anchor = open_anchor.pop()
            if anchor is not None:
                anchored[anchor] = size
            sizes[-1] += size
        elif isinstance(event, yaml.ScalarEvent):
            written += 1
            sizes[-1] += 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchor:  # `&a [*a]`: a value that contains itself
                mark = event.start_mark
                raise InputError(
                    f"the alias *{clip(event.anchor, 20)} at line {mark.line + 1} refers to a "
                    "collection that contains it (a value cannot contain itself)"
                )
            sizes[-1] += anchored.get(event.anchor, 1)
        if sizes[0] + sum(sizes[1:]) > written + ALIAS_GROWTH:
            mark = event.start_mark
            raise InputError(
                f"aliases at line {mark.line + 1} expand the document to more than "
                f"{ALIAS_GROWTH:,} extra values (an alias bomb?)"
            )


def load_yaml_text(text: str) -> Any:
    """One YAML document -> Python data (None for an empty document); bad YAML raises one InputError.

    Its size, nesting depth and alias expansion are bounded; integers longer than Python reads are refused."""
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"larger than {MAX_YAML_BYTES // 2**20} MiB")
    try:
        _check_shape(text)
        return yaml.load(text, Loader=ScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except ValueError as err:  # an integer of more than 4 300 digits (Python's int() limit), a bad timestamp
        raise InputError(f"not a value this tool reads ({clip(err, 60)})") from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        if context and not context.startswith("while"):  # e.g. "expected a single document in the stream"
            problem = f"{context}, {problem}"
        raise InputError(f"not valid YAML{where}: {problem}") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file -> Python data; a missing file, a directory, bad text or bad YAML raises one InputError naming
    the file (`what` says what the file should have been, e.g. 'scenario file'). The same text read again (replays
    and sweeps read one file many times) is parsed once."""
    file = str(path)
    if path.is_dir():
        raise InputError(f"is a directory, not a {what}", file=file)
    if not path.is_file():
        raise InputError("no such file", file=file)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise InputError(f"larger than {MAX_YAML_BYTES // 2**20} MiB; not a {what}", file=file)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file (not UTF-8)", file=file) from None
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None
    try:
        return copy_data(_parse_text(text))
    except InputError as err:
        raise err.at(file=file) from None


_ATOMS = (str, int, float, bool, type(None))


def copy_data(data: Any) -> Any:
    """A deep copy of YAML data, as copy.deepcopy makes it (a mapping or list reached twice through an alias is
    copied once, and shared as in the original), without deepcopy's generic dispatch for the plain mappings,
    lists and scalars YAML gives; anything else is left to deepcopy."""
    memo: dict[int, Any] = {}

    def copied(value: Any) -> Any:
        kind = type(value)
        if kind in _ATOMS:
            return value
        got = memo.get(id(value))
        if got is not None:
            return got
        if kind is dict:
            mapping: dict[Any, Any] = {}
            memo[id(value)] = mapping
            for key, item in value.items():
                mapping[copied(key)] = copied(item)
            return mapping
        if kind is list:
            items: list[Any] = []
            memo[id(value)] = items
            items.extend(map(copied, value))
            return items
        return copy.deepcopy(value, memo)

    return copied(data)


@functools.lru_cache(maxsize=16)
def _parse_text(text: str) -> Any:
    return load_yaml_text(text)
