"""The Swagger UI at /docs in headless Chromium: it renders every tag of /openapi.json (its
assets are embedded, so this also proves it works offline) without console errors.

Environment: CONSOLE_BASE (http://127.0.0.1:PORT), ARTIFACTS.
"""

import os

from harness import Browser, check, http, run

BASE = os.environ["CONSOLE_BASE"].rstrip("/")
# The tags the PRD names: each must be in the spec and shown by /docs.
PRD_TAGS = ["health", "ml", "business", "alerts", "dashboard", "events", "notifications", "projects"]
ARTIFACTS = os.environ.get("ARTIFACTS", "test-artifacts/browser")


def main():
    status, spec = http("GET", f"{BASE}/openapi.json")
    check(status == 200, f"/openapi.json answered {status}")
    tags = sorted({t for path in spec["paths"].values() for op in path.values() for t in op.get("tags", [])})
    check(tags, "the spec names no tags")
    absent = [t for t in PRD_TAGS if t not in {s.lower() for s in tags}]
    check(not absent, f"the spec lacks the PRD tags {absent} (has {tags})")
    b = Browser(BASE, ARTIFACTS)
    try:
        b.open("/docs")
        b.wait("the Swagger UI tags", lambda: b.js("return document.querySelectorAll('.opblock-tag').length") > 0, timeout=30)
        shown = b.js("return [...document.querySelectorAll('.opblock-tag')].map(t => t.getAttribute('data-tag'))")
        missing = [t for t in tags if t not in shown]
        check(not missing, f"/docs does not show the tags {missing} (shown: {shown})")
        b.expect_no_errors("/docs")
        b.screenshot("docs")
        check(os.path.getsize(os.path.join(ARTIFACTS, "docs.png")) > 0, "the /docs screenshot is empty")
    finally:
        b.close()
    print(f"docs check passed: /docs shows all {len(tags)} tags")


if __name__ == "__main__":
    run("docs check", main)
