"""Schemathesis hooks for scripts/schemathesis: the rules an OpenAPI schema cannot state.

A schema cannot relate two parameters, so cases breaking these rules are repaired before
they are sent (`before_call` runs in every phase; `map_query` would skip the coverage phase):

- `GET /api/v1/analytics/events` answers 400 (field `from`) when `from` is not before `to`:
  `to` is dropped.
- The analytics window (API.md "Time window"): `range` or `from` + `to`, never both, never
  one bound alone, `from < to`, at most 400 days; `granularity=minute` only for windows up to
  24 h. Cases breaking it are reduced to a valid window.
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
        end = None
    path = getattr(getattr(case, "operation", None), "path", "") or ""
    if path.startswith("/api/v1/analytics/") and not path.startswith("/api/v1/analytics/events"):
        _window_rule(query, start, end)


def _window_rule(query, start, end):
    if "range" in query and ("from" in query or "to" in query):
        query.pop("from", None)
        query.pop("to", None)
    elif ("from" in query) != ("to" in query):
        query.pop("from", None)
        query.pop("to", None)
    elif start is not None and end is not None and (end - start).days >= 400:
        query.pop("from", None)
        query.pop("to", None)
    if query.get("granularity") == "minute":
        if "from" in query and "to" in query and start is not None and end is not None:
            if (end - start).total_seconds() > 86400:
                del query["granularity"]
        elif query.get("range") not in (None, "1h", "24h"):
            del query["granularity"]
