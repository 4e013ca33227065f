"""Schemathesis hooks for scripts/schemathesis: the rules an OpenAPI schema cannot state.

`GET /api/v1/analytics/events` answers 400 (field `from`) when `from` is not before `to`;
a schema cannot relate two parameters, so cases breaking that rule drop `to` before they
are sent (`before_call` runs in every phase; `map_query` would skip the coverage phase).
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
def before_call(ctx, case, **kwargs):
    query = case.query
    if not isinstance(query, dict):
        return
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is not None and start >= end:
        del query["to"]
