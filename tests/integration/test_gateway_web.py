"""The web page at `/` in Debian's chromium, headless, against a real gateway process with real
Redis, SeaweedFS and the digits predictor: create an account, sign in, upload, see the bars."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness.gateway import Site, digit_png, fresh_redis_url, gateway_env, predicted_label
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as visible
from selenium.webdriver.support.ui import Select, WebDriverWait

from kubeclassify.cli.services import GatewayServer, PredictorServer, RedisServer, start_gateway
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore


@pytest.fixture
def gateway(
    tmp_path: Path,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    digits_predictor: PredictorServer,
) -> Iterator[GatewayServer]:
    store = ObjectStore(s3_settings)
    lines = ["filepath,date,label"]
    for i, day in ((1740, DAY), (1741, DAY), (1742, NEXT_DAY)):
        store.write(f"s3://{bucket}/data/{day}/{i}.png", digit_png(i)[0])
        lines.append(f"{day}/{i}.png,{day},")
    store.write(f"s3://{bucket}/data/metadata.csv", ("\n".join(lines) + "\n").encode())
    settings = gateway_env(
        fresh_redis_url(redis_server),
        s3_settings,
        f"s3://{bucket}/images",
        digits_predictor,
        batches_uri=f"s3://{bucket}/batches",
        fetch_allowed_networks='["127.0.0.0/8"]',
        manifest=json.dumps({"uri": f"s3://{bucket}/data/metadata.csv", "root": f"s3://{bucket}/data/"}),
        admin_username="root",
        admin_password=ADMIN_PASSWORD,
    )
    server = start_gateway(tmp_path / "logs", settings)
    yield server
    server.stop()


DAY, NEXT_DAY = "2026-11-20", "2026-11-21"  # the manifest's days: two images, then one
ADMIN_PASSWORD = "the root password, long enough"
ARTEFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "web"


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are needed: run `make browser`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--window-size=1000,800", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses to sandbox as root
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads")})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the page showed, kept for whoever reads the failure
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTEFACTS / f"{request.node.name}.png"
        chrome.save_screenshot(str(shot))
        print(f"the page at the failure: {shot}")
    chrome.quit()


def test_sign_up_upload_and_see_the_top_k(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path, digits_predictor: PredictorServer
) -> None:
    wait = WebDriverWait(browser, 30)
    png = digit_png(1750)[0]
    label = predicted_label(digits_predictor, png)
    image = tmp_path / "digit.png"
    image.write_bytes(png)

    browser.get(gateway.url + "/")
    assert browser.title == "KubeClassify"
    assert not browser.find_element(By.ID, "classify-section").is_displayed()
    browser.find_element(By.ID, "username").send_keys("webuser")
    browser.find_element(By.ID, "password").send_keys("a long enough password")
    browser.find_element(By.ID, "register").click()
    wait.until(visible.visibility_of_element_located((By.ID, "classify-section")))
    assert browser.find_element(By.ID, "username-shown").text == "webuser"
    wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "digits")

    browser.find_element(By.ID, "file").send_keys(str(image))
    credits_before = int(browser.find_element(By.ID, "credits").text)
    browser.find_element(By.CSS_SELECTOR, "#classify button[type=submit]").click()
    wait.until(visible.visibility_of_element_located((By.ID, "result")))
    assert browser.find_element(By.ID, "label").text == label
    rows = browser.find_elements(By.CSS_SELECTOR, "#chart .row")
    assert len(rows) == 5 and rows[0].get_attribute("data-label") == label
    scores = [float(r.get_attribute("data-score") or "nan") for r in rows]
    assert scores == sorted(scores, reverse=True)
    widths = [r.find_element(By.CLASS_NAME, "bar").size["width"] for r in rows]
    assert widths[0] > widths[-1] >= 1  # the bars are drawn in proportion to the scores
    wait.until(lambda b: int(b.find_element(By.ID, "credits").text) == credits_before - 1)
    browser.save_screenshot(str(tmp_path / "page.png"))

    # What the page showed is what the API stored for this user.
    token = httpx.post(
        gateway.url + "/v1/auth/token", data={"username": "webuser", "password": "a long enough password"}
    ).json()["access_token"]
    images = httpx.get(gateway.url + "/v1/images", headers={"Authorization": f"Bearer {token}"}).json()
    uid = browser.find_element(By.ID, "uid").text
    assert [i["uid"] for i in images["items"]] == [uid]


def test_a_wrong_password_is_shown_and_nothing_else_opens(
    gateway: GatewayServer, browser: webdriver.Chrome
) -> None:
    browser.get(gateway.url + "/")
    browser.find_element(By.ID, "username").send_keys("nobody")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    error = WebDriverWait(browser, 15).until(visible.visibility_of_element_located((By.ID, "error")))
    assert "wrong username or password" in error.text
    assert not browser.find_element(By.ID, "classify-section").is_displayed()


def test_the_page_is_served_with_a_strict_content_security_policy(gateway: GatewayServer) -> None:
    for path in ("/", "/web/app.js", "/web/app.css"):
        resp = httpx.get(gateway.url + path)
        assert resp.status_code == 200
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert resp.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(gateway.url + "/web/../config.py").status_code == 404
    assert httpx.get(gateway.url + "/web/missing.js").status_code == 404


def sign_up_in(browser: webdriver.Chrome, url: str, username: str) -> None:
    browser.get(url + "/")
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys("a long enough password")
    browser.find_element(By.ID, "register").click()
    WebDriverWait(browser, 30).until(visible.visibility_of_element_located((By.ID, "batch-section")))


def finished_row(browser: webdriver.Chrome) -> tuple[str, str, str, str] | bool:
    """(name, state, text, the state's tooltip) of a finished batch's row, once the table shows one."""
    for row in browser.find_elements(By.CSS_SELECTOR, "#batches tbody tr"):
        if row.get_attribute("data-state") in ("Succeeded", "Failed"):
            state = row.find_elements(By.TAG_NAME, "td")[1]
            return (
                row.get_attribute("data-name") or "",
                state.text,
                row.text,
                state.get_attribute("title") or "",
            )
    return False


def test_start_a_batch_watch_it_and_download_the_results(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path, digits_predictor: PredictorServer
) -> None:
    site = Site()
    try:
        sheet = tmp_path / "batch.csv"
        sheet.write_bytes(site.csv(["1760.png", "1761.png", "missing.png"]))
        sign_up_in(browser, gateway.url, "batcher")
        browser.find_element(By.ID, "csv").send_keys(str(sheet))
        browser.find_element(By.CSS_SELECTOR, "#batch button[type=submit]").click()
        stale = [StaleElementReferenceException]  # the table is redrawn while the batch runs
        found = WebDriverWait(browser, 120, ignored_exceptions=stale).until(finished_row)
        name, state, text, why = found  # type: ignore[misc]
        assert name.startswith("batcher-") and "3/3 (1 failed)" in text
        # one image of three failed: more than the 5% a batch allows, so it failed, and says why;
        # its results are there all the same
        assert state == "Failed" and why.startswith("1 of 3 images failed (33%)"), (state, why)
        browser.save_screenshot(str(tmp_path / "batches.png"))
        button = f'#batches tr[data-name="{name}"] button.download'
        WebDriverWait(browser, 30, ignored_exceptions=stale).until(
            lambda b: b.find_element(By.CSS_SELECTOR, button).click() or True
        )
        target = tmp_path / "downloads" / f"{name}.csv"
        WebDriverWait(browser, 30).until(lambda _: target.exists() and target.stat().st_size > 0)
        rows = list(csv.DictReader(io.StringIO(target.read_text())))
        assert len(rows) == 3
        expected = {predicted_label(digits_predictor, digit_png(i)[0]) for i in (1760, 1761)}
        assert {r["label"] for r in rows if not r["error"]} == expected
        delete = f'#batches tr[data-name="{name}"] button.delete'
        WebDriverWait(browser, 30, ignored_exceptions=stale).until(
            lambda b: b.find_element(By.CSS_SELECTOR, delete).click() or True
        )
        WebDriverWait(browser, 30).until(
            lambda b: not b.find_elements(By.CSS_SELECTOR, f'#batches tr[data-name="{name}"]')
        )
    finally:
        site.server.shutdown()


def test_a_running_batch_shows_its_speed_and_is_cancelled_from_the_page(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    names = [f"{i}.png" for i in range(1770, 1776)]
    site = Site(held=frozenset(names[3:]))  # three answered, three held until the test ends
    try:
        sheet = tmp_path / "batch.csv"
        sheet.write_bytes(site.csv(names))
        sign_up_in(browser, gateway.url, "canceller")
        browser.find_element(By.ID, "csv").send_keys(str(sheet))
        browser.find_element(By.CSS_SELECTOR, "#batch button[type=submit]").click()
        stale = [StaleElementReferenceException]

        def going(b: webdriver.Chrome) -> str | bool:
            rows = b.find_elements(By.CSS_SELECTOR, "#batches tbody tr[data-state=Running]")
            return bool(rows) and "images/s" in rows[0].text and rows[0].text

        text = WebDriverWait(browser, 60, ignored_exceptions=stale).until(going)
        assert "3/6" in str(text) and " left" in str(text), text
        browser.save_screenshot(str(tmp_path / "running.png"))
        WebDriverWait(browser, 30, ignored_exceptions=stale).until(
            lambda b: b.find_element(By.CSS_SELECTOR, "#batches button.cancel").click() or True
        )
        found = WebDriverWait(browser, 30, ignored_exceptions=stale).until(finished_row)
        _, state, _, why = found  # type: ignore[misc]
        assert (state, why) == ("Failed", "cancelled by its owner")
        credits = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "credits").text == "97")
        assert credits, "six paid for, three classified: three given back"
    finally:
        site.release.set()
        site.server.shutdown()


def click(browser: webdriver.Chrome, css: str) -> None:
    """Click what `css` finds, as soon as it is there (the page redraws its tables)."""
    stale = [StaleElementReferenceException]
    WebDriverWait(browser, 30, ignored_exceptions=stale).until(
        lambda b: b.find_element(By.CSS_SELECTOR, css).click() or True
    )


def text_of(browser: webdriver.Chrome, css: str) -> str:
    """The text of the first element `css` finds ("" when none, or when it was just redrawn)."""
    try:
        elements = browser.find_elements(By.CSS_SELECTOR, css)
        return elements[0].text if elements else ""
    except StaleElementReferenceException:
        return ""


def test_my_images_as_a_gallery_by_category_downloaded_and_deleted(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path, digits_predictor: PredictorServer
) -> None:
    sign_up_in(browser, gateway.url, "gallery")
    sent = {}
    for i in (1750, 1751, 1752):
        image = tmp_path / f"digit-{i}.png"
        image.write_bytes(digit_png(i)[0])
        sent[image.name] = predicted_label(digits_predictor, image.read_bytes())
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.CSS_SELECTOR, "#classify button[type=submit]").click()
        shown = len(sent)
        WebDriverWait(browser, 30).until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure")) == shown  # noqa: B023
        )
    stale = [StaleElementReferenceException]  # the gallery is redrawn as images come and go
    WebDriverWait(browser, 30, ignored_exceptions=stale).until(
        lambda b: (
            sorted(c.get_attribute("data-label") for c in b.find_elements(By.CSS_SELECTOR, "#gallery figure"))
            == sorted(sent.values())
        )
    )
    WebDriverWait(browser, 30, ignored_exceptions=stale).until(  # each thumbnail: the image, fetched
        lambda b: all(
            i.get_attribute("src").startswith("blob:")
            for i in b.find_elements(By.CSS_SELECTOR, "#gallery img")
        )
    )
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#category option")]
    counts = {label: list(sent.values()).count(label) for label in set(sent.values())}
    assert options == ["All (3)", *(f"{label} ({n})" for label, n in sorted(counts.items()))]
    browser.save_screenshot(str(tmp_path / "gallery.png"))

    label = sorted(counts)[0]
    Select(browser.find_element(By.ID, "category")).select_by_value(label)
    WebDriverWait(browser, 30, ignored_exceptions=stale).until(
        lambda b: (
            {c.get_attribute("data-label") for c in b.find_elements(By.CSS_SELECTOR, "#gallery figure")}
            == {label}
        )
    )
    name = next(n for n, lbl in sent.items() if lbl == label)
    click(browser, "#gallery figure button.download")
    target = tmp_path / "downloads" / name
    WebDriverWait(browser, 30).until(lambda _: target.exists() and target.stat().st_size > 0)
    assert target.read_bytes() == (tmp_path / name).read_bytes()
    click(browser, "#gallery figure button.delete")
    WebDriverWait(browser, 30).until(lambda b: text_of(b, "#category option") == "All (2)")


def test_a_daily_schedule_from_the_page(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    sign_up_in(browser, gateway.url, "scheduler")
    WebDriverWait(browser, 30).until(visible.visibility_of_element_located((By.ID, "schedules-section")))
    browser.find_element(By.ID, "cron").clear()
    browser.find_element(By.ID, "cron").send_keys("30 1 * * *")
    browser.execute_script(f"document.getElementById('start-date').value = '{DAY}'")
    browser.find_element(By.CSS_SELECTOR, "#schedule button[type=submit]").click()
    row = "#schedules tbody tr:not(.runs)"
    WebDriverWait(browser, 30).until(lambda b: DAY in text_of(b, row))
    assert "30 1 * * * UTC, catching up" in text_of(browser, row)

    click(browser, f"{row} button.fire")  # the next due date: the start date, two images
    WebDriverWait(browser, 60).until(lambda b: text_of(b, f"{row} td:nth-child(3)") == DAY)
    click(browser, f"{row} button.runs")
    WebDriverWait(browser, 30).until(
        lambda b: text_of(b, "#schedules tr.runs li") == f"{DAY}: Succeeded, 2 classified, 0 failed of 2"
    )
    browser.execute_script(f"document.querySelector('{row} .run-date').value = '{NEXT_DAY}'")
    click(browser, f"{row} button.run")
    WebDriverWait(browser, 60).until(
        lambda b: f"{NEXT_DAY}: Succeeded, 1 classified" in text_of(b, "#schedules tr.runs")
    )
    browser.save_screenshot(str(tmp_path / "schedules.png"))
    click(browser, f"{row} button.results")
    target = tmp_path / "downloads"
    WebDriverWait(browser, 30).until(lambda _: any(target.glob("*.csv")))
    rows = list(csv.DictReader(io.StringIO(next(target.glob("*.csv")).read_text())))
    assert sorted(r["date"] for r in rows) == [DAY, DAY, NEXT_DAY]

    click(browser, f"{row} button.pause")
    WebDriverWait(browser, 30).until(lambda b: "paused: paused by its owner" in text_of(b, row))
    click(browser, f"{row} button.resume")
    WebDriverWait(browser, 30).until(lambda b: "paused" not in text_of(b, row))
    click(browser, f"{row} button.delete")
    WebDriverWait(browser, 30).until(lambda b: not b.find_elements(By.CSS_SELECTOR, row))


def test_the_models_and_for_an_admin_every_account_with_a_refill(
    gateway: GatewayServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    sign_up_in(browser, gateway.url, "someone")
    model = WebDriverWait(browser, 30).until(lambda b: text_of(b, "#models tbody tr"))
    assert model.startswith("digits (default)") and "ready" in model
    assert browser.find_element(By.ID, "accounts-section").get_attribute("hidden") is not None
    browser.find_element(By.ID, "sign-out").click()
    assert browser.find_element(By.ID, "password").get_attribute("value") == "", "not left on the page"

    browser.find_element(By.ID, "username").send_keys("root")
    browser.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    account = '#accounts tr[data-name="someone"]'
    WebDriverWait(browser, 30).until(lambda b: text_of(b, account).startswith("someone 100"))
    browser.find_element(By.CSS_SELECTOR, f"{account} input.amount").send_keys("25")
    click(browser, f"{account} button.refill")
    WebDriverWait(browser, 30).until(lambda b: text_of(b, account).startswith("someone 125"))
    browser.save_screenshot(str(tmp_path / "accounts.png"))
