"""The operator's page in real headless Chromium: an alert sent through the gateway a moment before, and a
storm with its members, appear; the token is taken once and kept only in an HttpOnly, Strict cookie."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import alert, webhook

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def context_api_url(stack: LocalStack) -> str:
    stack.start_service("gateway", timeout=60)
    stack.start_service("context-api", timeout=60)
    return stack.url("context-api")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _send(stack: LocalStack, gateway_url: str, *alerts: dict[str, object]) -> list[dict[str, object]]:
    answer = httpx.post(
        f"{gateway_url}/api/v1/signals/prometheus",
        json=webhook(*alerts),
        headers={"Authorization": f"Bearer {stack.gateway_token}"},
        timeout=30,
    )
    assert answer.status_code in (201, 202), answer.text
    signals: list[dict[str, object]] = answer.json()["signals"]
    return signals


def test_page_shows_a_fresh_alert_and_a_storm_with_members(
    stack: LocalStack, gateway_url: str, context_api_url: str, browser: webdriver.Chrome
) -> None:
    tag = uuid.uuid4().hex[:8]
    single, storm, namespace = f"UiProbe{tag}", f"UiStorm{tag}", f"ui-{tag}"
    _send(stack, gateway_url, alert(single, namespace=namespace, pod="probe-0", severity="critical"))
    pods = [f"member-{tag}-{i}" for i in range(12)]
    outcomes = _send(stack, gateway_url, *(alert(storm, namespace=namespace, pod=p) for p in pods))
    assert {"storm_opened", "storm_aggregated"} <= {o["outcome"] for o in outcomes}
    token = stack.context_api_token

    browser.get(f"{context_api_url}/ui?token={token}")
    assert "token" not in browser.current_url
    WebDriverWait(browser, 30).until(lambda d: single in d.page_source)
    storms = browser.find_element("id", "storms").text
    assert storm in storms
    assert pods[-1] in storms, "the storm's last member is listed"
    assert token not in browser.page_source
    cookie = browser.get_cookie("kubernaut_ui")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""
    group = browser.find_element("id", "redis-group").text
    master = stack.current_master()
    assert master is not None
    assert f"{master[0]}:{master[1]}" in group
    for sentinel in stack.sentinels():
        assert f":{sentinel.port}" in group

    # Filters, then the page refreshing by itself: a later alert shows up without a reload.
    browser.get(f"{context_api_url}/ui?namespace={namespace}&severity=critical")
    rows = browser.find_element("id", "open-requests").text
    assert single in rows
    assert storm not in rows
    later = f"UiLater{tag}"
    _send(stack, gateway_url, alert(later, namespace=namespace, pod="probe-1", severity="critical"))
    WebDriverWait(browser, 30).until(lambda d: later in d.find_element("id", "open-requests").text)


def test_page_refuses_without_the_token(context_api_url: str) -> None:
    for url in (f"{context_api_url}/ui", f"{context_api_url}/ui?token=wrong"):
        answer = httpx.get(url, timeout=10, follow_redirects=False)
        assert answer.status_code == 401
        assert "Open RemediationRequests" not in answer.text
    forged = httpx.get(f"{context_api_url}/ui", cookies={"kubernaut_ui": "wrong"}, timeout=10)
    assert forged.status_code == 401


def test_dump_dom_shows_the_alert(
    stack: LocalStack, gateway_url: str, context_api_url: str, tmp_path: Path
) -> None:
    name = f"UiDump{uuid.uuid4().hex[:8]}"
    _send(stack, gateway_url, alert(name, namespace="ui-dump", pod="dump-0"))
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"{context_api_url}/ui?token={stack.context_api_token}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert name in dom
    assert stack.context_api_token not in dom
