"""A small harness for browser checks: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven over WebDriver with Selenium, the page's console log collected so a
check can fail on any console error, and screenshots kept in an artifacts directory.

Used by console_check.py (the built-in console) and docs_check.py (the Swagger UI at /docs).
"""

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


class Failure(AssertionError):
    """A check that did not hold."""


def check(cond, message):
    if not cond:
        raise Failure(message)


class Browser:
    """One headless Chromium session."""

    def __init__(self, base, artifacts, width=1280, height=900):
        self.base = base.rstrip("/")
        self.artifacts = artifacts
        os.makedirs(artifacts, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = os.environ.get("CHROMIUM_BIN", shutil.which("chromium") or "chromium")
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--window-size={width},{height}",
        ):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver_bin = os.environ.get("CHROMEDRIVER_BIN", shutil.which("chromedriver") or "chromedriver")
        self.driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)
        self.driver.set_page_load_timeout(30)

    def close(self):
        self.driver.quit()

    def open(self, path):
        self.driver.get(self.base + path)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, what, predicate, timeout=60):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: predicate())
        except Exception as e:  # TimeoutException carries no message of its own
            self.screenshot(f"FAILED-{what.replace(' ', '-')}")
            raise Failure(f"timed out waiting for {what}") from e

    def console(self):
        """The console entries since the last call: [(level, message)]."""
        return [(e["level"], e["message"]) for e in self.driver.get_log("browser")]

    def errors(self, allow=()):
        """Console errors since the last call, minus those containing an allowed string."""
        return [
            m
            for level, m in self.console()
            if level == "SEVERE" and not any(a in m for a in allow)
        ]

    def expect_no_errors(self, where, allow=()):
        errs = self.errors(allow)
        check(not errs, f"{where}: console errors: {errs}")

    def screenshot(self, name):
        path = os.path.join(self.artifacts, f"{name}.png")
        self.driver.save_screenshot(path)
        return path

    def set_width(self, width, height=900):
        self.driver.set_window_size(width, height)


def http(method, url, token=None, body=None):
    """A JSON request; returns (status, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def poll(what, fn, timeout=30, every=0.25):
    """Calls fn until it returns a truthy value; fails after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > end:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(every)


def run(name, main):
    """Runs a check's main: a Failure is reported on stderr with exit status 1."""
    try:
        main()
    except Failure as e:
        print(f"{name} FAILED: {e}", file=sys.stderr)
        sys.exit(1)
