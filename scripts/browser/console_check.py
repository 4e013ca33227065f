"""The built-in console in headless Chromium, on a server filled by `analytics-server demo`:

- every page loads without console errors (CSP violations, failed requests and script
  errors are console errors) and its charts render with data;
- acknowledging an alert in the UI changes it in the API;
- a bad alert configuration shows the API's error on the field it names;
- a business_viewer signs in by pasting a token and sees no health page;
- screenshots of every page (laptop width, and the overview at phone width) go to the
  artifacts directory, with timings.json (first paint and ready time of the overview).

Environment: CONSOLE_BASE (http://127.0.0.1:PORT), ADMIN_TOKEN, VIEWER_TOKEN, ARTIFACTS.
"""

import json
import os
import uuid
from datetime import datetime, timezone

from harness import Browser, check, http, poll, run

BASE = os.environ["CONSOLE_BASE"].rstrip("/")
ADMIN = os.environ["ADMIN_TOKEN"]
VIEWER = os.environ["VIEWER_TOKEN"]
ARTIFACTS = os.environ.get("ARTIFACTS", "test-artifacts/browser")
API = f"{BASE}/api/v1/analytics"

# A request the page makes on purpose and that the API answers with 400 logs a console error
# in Chromium ("Failed to load resource"); only the bad-config step allows it.
BAD_REQUEST = "status of 400"


def sign_in_with_storage(b, token):
    """Puts the token where the console keeps it (session storage) without the form."""
    b.open("/")
    b.wait("the sign-in form", lambda: b.js("return document.body.dataset.ready") == "signin")
    b.js("sessionStorage.setItem('analytics.token', arguments[0])", token)


def goto(b, page, query=""):
    b.js("document.body.dataset.ready = ''")
    b.js("window.location.hash = arguments[0]", f"#/{page}{query}")
    b.wait(f"page {page}", lambda: b.js("return document.body.dataset.ready") == page)


def charts_with_data(b, minimum):
    """Waits until `minimum` charts drew their canvas with at least one point each."""

    def drawn():
        return b.js(
            """
            const charts = [...document.querySelectorAll('figure.chart')];
            return charts.filter(c => c.querySelector('canvas') && Number(c.dataset.points) > 0).length;
            """
        ) >= minimum

    b.wait(f"{minimum} charts with data", drawn)


def fire_alert():
    """An alert to acknowledge: a configuration on api.latency_ms over the last 5 minutes and
    a few fresh api_request events (the demo month ends at the start of this hour)."""
    now = datetime.now(timezone.utc).isoformat()
    events = [
        {
            "id": str(uuid.uuid4()),
            "kind": "api_request",
            "timestamp": now,
            "payload": {"method": "GET", "route": "/console-check", "status": 200, "latency_ms": 12.5},
        }
        for _ in range(5)
    ]
    status, body = http("POST", f"{API}/events", ADMIN, {"events": events})
    check(status in (200, 201, 202), f"ingest answered {status}: {body}")
    status, cfg = http(
        "POST",
        f"{API}/alerts/configs",
        ADMIN,
        {
            "name": f"console check {uuid.uuid4().hex[:8]}",
            "metric": "api.latency_ms",
            "stat": "count",
            "condition": "threshold_above",
            "threshold": 0,
            "window_secs": 300,
            "severity": "warning",
            "cooldown_secs": 60,
            "channels": ["in_app"],
            "recipients": [{"user": "console-admin"}],
        },
    )
    check(status == 201, f"creating the alert configuration answered {status}: {cfg}")

    def active():
        s, page = http("GET", f"{API}/alerts/active?config_id={cfg['id']}", ADMIN)
        return s == 200 and page["items"] and page["items"][0]

    return poll("the alert to fire", active, timeout=60)


def main():
    timings = {}
    b = Browser(BASE, ARTIFACTS)
    try:
        # ---- admin: the overview first, timed ------------------------------------------
        sign_in_with_storage(b, ADMIN)
        b.expect_no_errors("sign-in page")
        b.js("window.location.hash = '#/overview'; window.location.reload()")
        b.wait("overview", lambda: b.js("return document.body.dataset.ready") == "overview")
        t = b.js(
            """
            const nav = performance.getEntriesByType('navigation')[0];
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const ready = performance.getEntriesByName('ready:overview')[0];
            const summary = performance.getEntriesByType('resource')
                .find(r => r.name.includes('/dashboard/summary'));
            return {
                first_contentful_paint_ms: fcp ? fcp.startTime : null,
                overview_ready_ms: ready ? ready.startTime : null,
                dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
                summary_request_ms: summary ? summary.duration : null,
            };
            """
        )
        timings["overview"] = t
        check(t["overview_ready_ms"] is not None, "the overview set no ready mark")
        cards = b.js("return [...document.querySelectorAll('.card')].map(c => c.textContent)")
        check(any("Revenue" in c for c in cards), f"overview shows no revenue: {cards}")
        check(any("Error rate" in c for c in cards), f"overview shows no error rate: {cards}")
        check(any("ML success" in c for c in cards), f"overview shows no ML success: {cards}")
        b.expect_no_errors("overview")
        b.screenshot("overview")

        # ---- every admin page, with its charts ----------------------------------------
        for page, query, charts in (
            ("health", "?range=30d", 2),
            ("health", "?range=24h", 2),
            ("ml", "?range=30d", 0),
            ("business", "?range=30d", 2),
            ("alerts", "", 0),
            ("notifications", "", 0),
        ):
            goto(b, page, query)
            if charts:
                charts_with_data(b, charts)
            b.expect_no_errors(f"{page}{query}")
            b.screenshot(f"{page}{query.replace('?range=', '-')}")

        # Health: the endpoint table sorts by a column on click.
        goto(b, "health", "?range=30d")
        rows = b.js("return document.querySelectorAll('table.endpoints tbody tr').length")
        check(rows >= 10, f"health lists {rows} endpoints")
        b.js("document.querySelectorAll('table.endpoints th button.sort')[3].click()")
        sort = b.js("return document.querySelectorAll('table.endpoints th')[3].getAttribute('aria-sort')")
        check(sort == "descending", f"the error-rate column did not sort: aria-sort={sort}")
        # ML: pipelines and providers from the demo month.
        goto(b, "ml", "?range=30d")
        ml_rows = b.js("return document.querySelectorAll('table tbody tr').length")
        check(ml_rows >= 7, f"the ML page lists {ml_rows} rows")
        # Business: the funnel bars and collections.
        goto(b, "business", "?range=30d")
        steps = b.js("return [...document.querySelectorAll('.funnel progress')].map(p => p.value)")
        check(len(steps) == 5 and steps[0] > 0, f"funnel steps: {steps}")
        b.expect_no_errors("page checks")

        # ---- acknowledging an alert in the UI changes it in the API --------------------
        alert = fire_alert()
        goto(b, "alerts")
        button = f"button.ack[data-alert='{alert['id']}']"
        b.wait("the acknowledge button", lambda: b.js(f'return !!document.querySelector("{button}")'))
        b.screenshot("alerts-active")
        b.js(f'document.querySelector("{button}").click()')
        b.wait(
            "the acknowledged alert to leave the active list",
            lambda: b.js("return document.body.dataset.ready") == "alerts"
            and not b.js(f'return !!document.querySelector("{button}")'),
        )
        status, page = http("GET", f"{API}/alerts/history?config_id={alert['config_id']}&range=24h", ADMIN)
        check(status == 200, f"history answered {status}")
        record = next(a for a in page["items"] if a["id"] == alert["id"])
        check(record["status"] == "acknowledged", f"the alert is {record['status']} in the API")
        check(record["acknowledged_by"] == "console-admin", f"acknowledged_by {record['acknowledged_by']}")
        b.expect_no_errors("acknowledge")

        # ---- a bad configuration shows the field's error -------------------------------
        b.js(
            """
            const set = (id, v) => { document.getElementById(id).value = v; };
            set('f-name', 'console bad config');
            set('f-threshold', '5');
            set('f-recipients', 'not-an-email');
            document.querySelector('form.config-form button[type=submit]').click();
            """
        )
        b.wait("the recipients field error", lambda: b.js("return document.getElementById('f-recipients-error').textContent") != "")
        msg = b.js("return document.getElementById('f-recipients-error').textContent")
        invalid = b.js("return document.getElementById('f-recipients').getAttribute('aria-invalid')")
        check("recipients[0]" in msg, f"the error names another field: {msg!r}")
        check(invalid == "true", "the recipients field is not marked invalid")
        focused = b.js("return document.activeElement.id")
        check(focused == "f-recipients", f"focus is on {focused!r}, not the bad field")
        b.expect_no_errors("bad config", allow=(BAD_REQUEST,))
        b.screenshot("alerts-bad-config")
        status, cfgs = http("GET", f"{API}/alerts/configs", ADMIN)
        check(all(c["name"] != "console bad config" for c in cfgs["items"]), "the bad config was stored")

        # ---- the form creates a configuration, then edits it ---------------------------
        b.js(
            """
            document.getElementById('f-name').value = 'console form config';
            document.getElementById('f-recipients').value = 'user:console-admin';
            document.body.dataset.ready = '';
            document.querySelector('form.config-form button[type=submit]').click();
            """
        )
        b.wait("the page after creating", lambda: b.js("return document.body.dataset.ready") == "alerts")
        status, cfgs = http("GET", f"{API}/alerts/configs", ADMIN)
        created = next((c for c in cfgs["items"] if c["name"] == "console form config"), None)
        check(created is not None, "the form did not create the configuration")
        check(created["threshold"] == 5 and created["recipients"] == [{"user": "console-admin"}], f"created {created}")
        b.js(f'document.querySelector("button.edit[data-config=\'{created["id"]}\']").click()')
        check(b.js("return document.getElementById('f-threshold').value") == "5", "the edit form is not filled in")
        b.js(
            """
            document.getElementById('f-threshold').value = '7.5';
            document.body.dataset.ready = '';
            document.querySelector('form.config-form button[type=submit]').click();
            """
        )
        b.wait("the page after editing", lambda: b.js("return document.body.dataset.ready") == "alerts")
        status, edited = http("GET", f"{API}/alerts/configs/{created['id']}", ADMIN)
        check(status == 200 and edited["threshold"] == 7.5 and edited["version"] == created["version"] + 1, f"edited {edited}")
        b.expect_no_errors("create and edit")

        # ---- the overview at phone width -----------------------------------------------
        b.set_width(390, 844)
        goto(b, "overview")
        overflow = b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 0, f"the overview scrolls sideways by {overflow}px at phone width")
        b.screenshot("overview-phone")
        goto(b, "business", "?range=7d")
        charts_with_data(b, 2)
        b.screenshot("business-phone")
        b.expect_no_errors("phone width")
        b.set_width(1280, 900)

        # ---- sign out; a business_viewer signs in with the form ------------------------
        b.js("document.getElementById('signout').click()")
        b.wait("the sign-in form", lambda: b.js("return document.body.dataset.ready") == "signin")
        check(b.js("return sessionStorage.getItem('analytics.token')") is None, "the token outlived sign-out")
        b.js("document.getElementById('token').value = arguments[0]", VIEWER)
        b.js("document.querySelector('#signin-form button[type=submit]').click()")
        b.wait("the viewer's overview", lambda: b.js("return document.body.dataset.ready") == "overview")
        check(VIEWER not in b.driver.current_url, "the token is in the URL")
        visible = b.js("return [...document.querySelectorAll('#nav a')].filter(a => !a.hidden).map(a => a.dataset.page)")
        check(visible == ["overview", "business", "notifications"], f"a business_viewer sees {visible}")
        cards = b.js("return [...document.querySelectorAll('.card')].map(c => c.textContent)")
        check(any("Revenue" in c for c in cards), "the viewer's overview shows no revenue")
        check(not any("Error rate" in c for c in cards), "the viewer's overview shows health figures")
        b.screenshot("viewer-overview")
        b.js("window.location.hash = '#/health'")
        b.wait("the health page to be refused", lambda: b.js("return document.body.dataset.ready") == "overview")
        check("#/overview" in b.driver.current_url, f"a viewer reached {b.driver.current_url}")
        goto(b, "business", "?range=30d")
        charts_with_data(b, 2)
        b.screenshot("viewer-business")
        b.expect_no_errors("business_viewer")
    finally:
        with open(os.path.join(ARTIFACTS, "timings.json"), "w") as f:
            json.dump(timings, f, indent=2)
        b.close()
    o = timings["overview"]
    print(
        "console check passed: overview first contentful paint "
        f"{o['first_contentful_paint_ms']:.0f} ms, ready with data {o['overview_ready_ms']:.0f} ms "
        f"(dashboard/summary request {o['summary_request_ms']:.0f} ms); screenshots in {ARTIFACTS}"
    )


if __name__ == "__main__":
    run("console check", main)
