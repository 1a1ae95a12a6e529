"""Bounded parsing of the YAML and JSON documents cpswap reads (stack files, saved outputs,
policy config, kubeconfigs from the cluster). Pure: text in, data out.

- YAML: libyaml's C parser where PyYAML has it (``CSafeLoader``), else the pure-Python one; the
  composed node graph is counted with aliases expanded before anything is constructed, so an
  alias bomb is refused after composing a few hundred nodes instead of being expanded (or
  printed) into gigabytes; recursive aliases are refused; duplicate mapping keys are errors,
  not last-wins (YAML 1.2 requires unique keys; merge keys ``<<`` may still be overridden).
- JSON: duplicate keys are errors; ``NaN``/``Infinity`` are refused; too deep nesting is an error.
Every problem raises ``DocumentError`` with a bounded, one-paragraph message.
"""
from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_NODES = 100_000  # a stack file has a few hundred; counted with aliases expanded
MAX_DEPTH = 64  # nesting; deeper documents would overflow the composer's (C) stack
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DocumentError(ValueError):
    """The text is not an acceptable document; the message says why (bounded length)."""


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class _StrictLoader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """Safe loader whose mappings refuse duplicate keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found an unhashable key",
                    key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {_short(repr(key), 80)} (keys must be unique; YAML last-wins is refused)",
                    key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _expanded_size(root: Node, *, limit: int) -> int:
    """Node count with every alias expanded (memoised per node, so counting is linear in the
    composed graph); raises DocumentError past ``limit`` or on a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > limit:
                raise DocumentError(f"the document expands to more than {limit} nodes (aliases counted "
                                    f"expanded); refusing it (an alias bomb?)")
            sizes[key] = total
            active.discard(key)
            continue
        if key in sizes:
            continue
        if key in active:
            raise DocumentError("the document contains a recursive alias; refusing it")
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise DocumentError("the document contains a recursive alias; refusing it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_depth(text: str, *, limit: int) -> None:
    """Stream the parser's events (libyaml's parser is iterative) and refuse deep nesting
    before the recursive composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=_BASE_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > limit:
                raise DocumentError(f"the document nests deeper than {limit} levels; refusing it")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def parse_yaml(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """One YAML document (None when empty), bounded and strict as the module docstring says."""
    try:
        _check_depth(text, limit=max_depth)
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {_short(str(exc))}") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, limit=max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {_short(str(exc))}") from None
    except RecursionError:
        raise DocumentError("not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DocumentError(f"not valid JSON: duplicate key {_short(repr(key), 80)} (keys must be unique)")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise DocumentError(f"not valid JSON: {name} is not a JSON number")


def parse_json(text: str) -> Any:
    """A JSON document with unique keys and finite numbers."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DocumentError("not valid JSON: nested too deeply") from None
