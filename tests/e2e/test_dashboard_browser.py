"""A person at the dashboard, in headless Chromium against the real embedded server: sign in,
upload the example model and dataset, see the server's validation error next to the field,
submit a job, watch it finish, and read its report (every image loaded, numbers equal the
job's metrics from the API, no console errors, the key never in a URL)."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import EmbeddedServer
from tests.report_checks import assert_numbers_match

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as when  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME = next((path for name in BROWSERS if (path := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
if CHROME is None or DRIVER is None:
    pytest.skip(
        "no headless Chromium with chromedriver on PATH (Debian: apt-get install chromium "
        "chromium-driver; .ci/run installs them)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    running = EmbeddedServer(tmp_path, _free_port())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROME
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1600"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: webdriver.Chrome, seconds: float = 30) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.2)


def _open(driver: webdriver.Chrome, url: str) -> None:
    """Load a page and wait until its script has taken over the forms."""
    driver.get(url)
    _wait(driver).until(lambda d: d.execute_script("return document.body.dataset.ready"))


def _error_for(driver: webdriver.Chrome, form: str, slot: str):
    return driver.find_element(By.CSS_SELECTOR, f'#{form} [data-error-for="{slot}"]')


def test_sign_in_upload_submit_watch_and_read_the_report(
    server: EmbeddedServer,
    browser: webdriver.Chrome,
    tmp_path: Path,
    digits_model_pt2: bytes,
    digits_npz: bytes,
) -> None:
    key = (tmp_path / "data" / "api-key").read_text().strip()
    model_file, data_file = tmp_path / "digits_cnn.pt2", tmp_path / "digits.npz"
    model_file.write_bytes(digits_model_pt2)
    data_file.write_bytes(digits_npz)

    # signing in: a wrong key is refused next to the field, the right one lands on the jobs
    browser.get(server.url + "/ui")
    _wait(browser).until(when.url_to_be(server.url + "/ui/signin"))
    _wait(browser).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    browser.find_element(By.ID, "api-key").send_keys("not-a-key")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    _wait(browser).until(lambda d: _error_for(d, "signin-form", "api_key").text)
    assert "not accepted (401)" in _error_for(browser, "signin-form", "api_key").text
    browser.find_element(By.ID, "api-key").clear()
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    _wait(browser).until(when.url_to_be(server.url + "/ui/jobs"))
    assert browser.execute_script("return sessionStorage.length") == 1
    assert browser.get_cookies() == []

    # uploads
    _open(browser, server.url + "/ui/new")
    for form, path in (("model-form", model_file), ("dataset-form", data_file)):
        browser.find_element(By.CSS_SELECTOR, f"#{form} input[type=file]").send_keys(str(path))
        browser.find_element(By.CSS_SELECTOR, f"#{form} button").click()
        status = (By.CSS_SELECTOR, f"#{form} .form-status")
        _wait(browser, 120).until(when.text_to_be_present_in_element(status, "Uploaded"))
    _wait(browser).until(lambda d: d.find_element(By.ID, "job-model").get_attribute("value"))

    # the server's validation error appears next to the field it is about
    ratio = browser.find_element(By.ID, "prune_filters-ratio")
    ratio.clear()
    ratio.send_keys("1.5")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    _wait(browser).until(lambda d: _error_for(d, "job-form", "prune_filters.ratio").text)
    assert "less than 1" in _error_for(browser, "job-form", "prune_filters.ratio").text
    assert ratio.get_attribute("aria-invalid") == "true"
    assert browser.current_url == server.url + "/ui/new"
    ratio.clear()
    ratio.send_keys("0.5")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    _wait(browser).until(when.url_contains("/ui/jobs/job_"))
    job_id = browser.current_url.rsplit("/", 1)[1]

    # watch it finish; the report appears in the page
    status = (By.ID, "job-status")
    _wait(browser, 300).until(lambda d: d.find_element(*status).text in {"succeeded", "failed"})
    assert browser.find_element(*status).text == "succeeded"
    _wait(browser).until(when.visibility_of_element_located((By.ID, "job-report")))
    events = browser.find_elements(By.CSS_SELECTOR, "#job-events tbody tr")
    assert len(events) >= 5 and "succeeded" in events[-1].text
    browser.switch_to.frame(browser.find_element(By.ID, "job-report"))
    loaded = "return document.images.length > 0 && [...document.images].every(i => i.complete)"
    _wait(browser).until(lambda d: d.execute_script(loaded))
    widths = browser.execute_script("return [...document.images].map(i => i.naturalWidth)")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('[data-metric]')]"
        ".map(e => [e.dataset.metric, e.dataset.unit, e.textContent])"
    )
    heading = browser.find_element(By.TAG_NAME, "h1").text
    browser.switch_to.default_content()
    assert len(widths) == 3 and all(width > 0 for width in widths)
    assert heading == f"Compression report: {job_id}"

    auth = {"Authorization": f"Bearer {key}"}
    job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=auth).json()
    assert assert_numbers_match([tuple(item) for item in shown], job["metrics"]) >= 40
    accuracy = browser.find_element(By.CSS_SELECTOR, '#job-metrics [data-field="accuracy"]')
    assert f"{100 * job['metrics']['after']['accuracy']:.2f} %" in accuracy.text

    # the list shows it too, live
    browser.get(server.url + "/ui/jobs")
    row = (By.CSS_SELECTOR, f'#jobs tr[data-job-id="{job_id}"]')
    _wait(browser).until(when.text_to_be_present_in_element(row, "succeeded"))

    # no console errors beyond the two refusals the test asked for; the key in no URL
    expected = ("/v1/jobs?limit=1 - Failed to load resource: the server responded with a "
                "status of 401", "/v1/jobs - Failed to load resource: the server responded "
                "with a status of 422")  # fmt: skip
    errors = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and not any(part in entry["message"] for part in expected)
    ]
    assert errors == []
    time.sleep(0.5)  # the access log is written as requests finish
    requests = [line for line in server.log.read_text().splitlines() if ' HTTP/1.1" ' in line]
    assert len(requests) > 20 and not [line for line in requests if key in line]
