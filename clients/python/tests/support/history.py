"""Reading what Temporal stored, without any codec: every Payload in a history, wherever the
event type puts it (inputs, results, signals, failures, headers, memos, ...)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

_PAYLOAD = Payload.DESCRIPTOR.full_name


def payloads_in(message: Message) -> Iterator[Payload]:
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                continue
            items: Iterable[Any] = value.values()
            element = value_field.message_type
        elif field.is_repeated:
            items, element = value, field.message_type
        else:
            items, element = [value], field.message_type
        for item in items:
            if element.full_name == _PAYLOAD:
                yield item
            else:
                yield from payloads_in(item)


def json_payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Payload-shaped objects (``metadata`` with an ``encoding``) in ``temporal ... -o json``."""
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and "encoding" in metadata:
            yield node
        for v in node.values():
            yield from json_payloads(v)
    elif isinstance(node, list):
        for v in node:
            yield from json_payloads(v)


def json_encodings(text: str) -> list[str]:
    return [
        base64.b64decode(p["metadata"]["encoding"]).decode(errors="replace")
        for p in json_payloads(json.loads(text))
    ]
