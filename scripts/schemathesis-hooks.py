"""Schemathesis hooks for scripts/schemathesis: the rules an OpenAPI schema cannot state.

`GET /api/v1/analytics/events` answers 400 (field `from`) when `from` is not before `to`;
a schema cannot relate two parameters, so schema-valid cases breaking that rule drop `to`.
"""

from datetime import datetime, timezone

import schemathesis


def _instant(value):
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        if parsed.tzinfo is None:
            return None
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


@schemathesis.hook
def map_query(ctx, query):
    if not isinstance(query, dict):
        return query
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is not None and start >= end:
        query = dict(query)
        del query["to"]
    return query
