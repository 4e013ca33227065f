"""Schemathesis hooks for scripts/schemathesis: the rules an OpenAPI schema cannot state.

A schema cannot relate two parameters, so cases breaking these rules are repaired before
they are sent (`before_call` runs in every phase; `map_query` would skip the coverage phase):

- `GET /api/v1/analytics/events` answers 400 (field `from`) when `from` is not before `to`:
  `to` is dropped.
- The analytics window (API.md "Time window"): `range` or `from` + `to`, never both, never
  one bound alone, `from < to`, at most 400 days; `granularity=minute` only for windows up to
  24 h. Cases breaking it are reduced to a valid window.
- Alert configurations (`POST .../alerts/configs`, `PUT .../alerts/configs/{id}`): the
  metric must be in the catalog, the statistic one it offers and the dimensions one of its
  groupings; the ranges and cross-field rules are checked by the server so that the 400
  names the field (`window_secs`, `recipients[1].email`), so the schema states only types.
  Positive (schema-valid) cases are repaired into a valid configuration; negative cases are
  left alone. A bulk acknowledgement keeps one of `ids` / `filter`. A well-formed `If-Match`
  is dropped (the version is a guess; a stale one is 412).
- Business routes: `currency` is three letters in the schema, but only ISO 4217 codes are
  known (another is 400 naming `currency`); a positive case's unknown code becomes `USD`.
- Projects and sources (`POST|PATCH .../projects[...]`): the keys of a `kinds` map must be
  event kinds (a schema cannot constrain map keys); positive cases get `page_view`. The slug
  `analytics-internal` is reserved (400 naming `id`); a positive case gets another.
- Notification preferences (`PUT .../notifications/preferences[...]`): the server checks the
  email, E.164 phone, https webhook, channel names, quiet hours (IANA zone) and member ids so
  that the 400 names the field; positive cases get values that pass those checks.
"""

import re
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
    operation = getattr(case, "operation", None)
    path = getattr(operation, "path", "") or ""
    method = (getattr(operation, "method", "") or "").upper()
    if path.startswith("/api/v1/analytics/alerts/"):
        _alerts(case, path, method)
    if path.startswith("/api/v1/analytics/notifications/preferences") and method == "PUT":
        _preferences(case)
    if path.startswith("/api/v1/analytics/projects") and method in ("POST", "PATCH"):
        _projects(case)
    query = case.query
    if not isinstance(query, dict):
        return
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is not None and start >= end:
        del query["to"]
        end = None
    if path.startswith("/api/v1/analytics/") and not path.startswith("/api/v1/analytics/events"):
        _window_rule(query, start, end)
    if path.startswith("/api/v1/analytics/business/") and _positive(case):
        currency = query.get("currency")
        if isinstance(currency, str) and currency.upper() not in _KNOWN_CURRENCIES:
            query["currency"] = "USD"


# The codes `analytics_core::business::parse_currency` knows (ISO 4217, active).
_KNOWN_CURRENCIES = set(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)


def _positive(case):
    """Whether the case was generated to be schema-valid (negative cases are left alone)."""
    generation = getattr(getattr(case, "meta", None), "generation", None)
    mode = getattr(generation, "mode", None)
    return getattr(mode, "value", mode) in (None, "positive")


def _alerts(case, path, method):
    if not _positive(case):
        # Negative cases are left alone (changing one revalidates it as positive).
        return
    configs = path.startswith("/api/v1/analytics/alerts/configs")
    if configs and method == "PUT":
        # A well-formed but stale If-Match is a 412 (covered by the API tests); the version
        # of a generated case is a guess, so it is dropped.
        headers = case.headers
        if headers is not None and "If-Match" in headers:
            value = headers["If-Match"]
            if isinstance(value, str) and re.fullmatch(r'(W/)?"?[0-9]{1,19}"?', value):
                del headers["If-Match"]
    if not isinstance(case.body, dict):
        return
    if path == "/api/v1/analytics/alerts/configs/import" and method == "POST":
        # Each item is a configuration; names and ids must not repeat within one import.
        items = case.body.get("items")
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    _alert_config(item)
                    item["name"] = f"imported {i}"
                    item.pop("id", None)
    elif configs and method in ("POST", "PUT"):
        _alert_config(case.body)
    elif path == "/api/v1/analytics/alerts/acknowledge" and method == "POST":
        # `{"ids"}` or `{"filter"}`: the variants refuse each other's fields.
        keep = "ids" if "ids" in case.body else "filter"
        for key in [k for k in case.body if k != keep]:
            del case.body[key]


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


def _alert_config(body):
    """Makes a schema-valid configuration valid for the catalog and the cross-field rules."""
    name = body.get("name")
    if not (isinstance(name, str) and name.strip() and len(name) <= 200):
        body["name"] = "alert"
    body["metric"] = "api.latency_ms"  # offers every statistic and the overall series
    body["threshold"] = 1.0
    body["window_secs"] = 300
    below = body.get("condition") == "threshold_below"
    defaults = {
        "dimensions": {},
        "recovery_threshold": 2.0 if below else 0.5,
        "cooldown_secs": 60,
        "for_secs": 60,
        "recipients": [{"email": "ops@example.com"}],
        "project": "default",
    }
    for field, value in defaults.items():
        if body.get(field) is not None:
            body[field] = value
    if isinstance(body.get("channels"), list):
        body["channels"] = [c for c in body["channels"] if c in ("in_app", "slack", "email", "sms")]


_CHANNELS = {"in_app", "slack", "email", "sms"}


def _user_id(value):
    return (
        isinstance(value, str)
        and value.strip() != ""
        and len(value.encode()) <= 256
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    )


def _preferences(case):
    if not _positive(case) or not isinstance(case.body, dict):
        return
    body = case.body
    if body.get("email") is not None:
        body["email"] = "ops@example.com"
    if body.get("phone") is not None:
        body["phone"] = "+14155550100"
    if body.get("slack_webhook") is not None:
        body["slack_webhook"] = "https://hooks.slack.com/services/T/B/X"
    if body.get("quiet_hours") is not None:
        body["quiet_hours"] = {"start": "22:00", "end": "07:00", "timezone": "UTC"}
    channels = body.get("channels")
    if isinstance(channels, dict):
        for severity, names in channels.items():
            if isinstance(names, list):
                channels[severity] = [n for n in names if isinstance(n, str) and n in _CHANNELS]
    members = body.get("members")
    if isinstance(members, list):
        body["members"] = [m for m in members if _user_id(m)][:500]


def _kinds(value):
    """Rewrites every `kinds` map below `value` to known event kinds."""
    if isinstance(value, dict):
        for key, inner in list(value.items()):
            if key == "kinds" and isinstance(inner, dict) and inner:
                value[key] = {"page_view": 0.5}
            else:
                _kinds(inner)
    elif isinstance(value, list):
        for inner in value:
            _kinds(inner)


def _projects(case):
    if not _positive(case) or not isinstance(case.body, dict):
        return
    _kinds(case.body)
    if case.body.get("id") == "analytics-internal":
        case.body["id"] = "analytics-other"
