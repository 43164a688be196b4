"""Request bodies with bounds: a size, and a depth of nesting, past which the answer is a
400 that says so (never a 500 from a parser that recursed too deep)."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 20


def _depth(value, limit: int) -> int:
    """How deeply lists and objects nest in `value` (stops counting past `limit`)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > limit:
            return depth
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in node)
    return deepest


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.PARKWEB_API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"The request body is larger than {limit} bytes.")
        if not raw:
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The request body is not JSON: {str(exc)[:80]}") from None
        if _depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.")
        return data
