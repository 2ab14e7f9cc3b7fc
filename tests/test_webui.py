"""The review page end to end in a real headless browser (Debian's chromium, driven by Selenium): the grid
renders, clicks and keys pick, picks survive a reload and another tab's picks, and the button trains."""

import os
import shutil
import socket
import threading
import time

import pytest
from PIL import Image

from styledrop.feedback.picks import read_picks, set_pick
from styledrop.feedback.rounds import SelectConfig, refine
from styledrop.pipeline import SampleConfig
from styledrop.toyworld.build import ASSETS
from styledrop.train import TrainConfig

TRAIN = TrainConfig(steps=3, batch_size=2, crops_per_image=1, checkpoint_every=1)


@pytest.fixture
def scored_round(round1, tmp_path):
    out = tmp_path / "r2"
    result = refine(
        round1, out, ["a red star", "a blue circle"], 3, 0, SampleConfig(steps=2, batch_size=3),
        SelectConfig("human"), str(ASSETS / "clip"), progress=False, log=lambda _: None,
    )  # fmt: skip
    assert result.waiting_for_picks
    return out


@pytest.fixture
def server(scored_round):
    import uvicorn

    from styledrop.webui.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(scored_round, config=TRAIN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", scored_round
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        message = "Debian's chromium and chromium-driver are needed (.ci/run installs them)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.implicitly_wait(5)
    yield browser
    browser.quit()


def wait_for(condition, timeout=30.0, show=lambda: ""):
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out {show()}")


def figures(browser):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "#grid figure")


def picked_on_page(browser):
    return [f.get_attribute("data-file") for f in figures(browser) if "picked" in f.get_attribute("class")]


def test_review_page_picks_and_trains(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, round_dir = server
    browser.get(url)
    wait_for(lambda: len(figures(browser)) == 3)
    assert browser.find_element(By.ID, "prompt").text == "a red star in test style"
    loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    wait_for(lambda: browser.execute_script(loaded))

    figures(browser)[0].click()  # click picks
    browser.find_element(By.TAG_NAME, "body").send_keys("2")  # so does an image's number
    wait_for(lambda: sorted(read_picks(round_dir)) == ["000-00.png", "000-01.png"], show=lambda: read_picks(round_dir))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    wait_for(lambda: browser.find_element(By.ID, "prompt").text == "a blue circle in test style")
    figures(browser)[2].click()
    figures(browser)[2].click()  # a second click unpicks
    browser.find_element(By.TAG_NAME, "body").send_keys("1")
    wait_for(lambda: sorted(read_picks(round_dir)) == ["000-00.png", "000-01.png", "001-00.png"])
    assert browser.find_element(By.ID, "total").text == "3" and browser.find_element(By.ID, "here").text == "1"

    set_pick(round_dir, "001-01.png", True)  # another tab picks; this page shows it and keeps it
    wait_for(lambda: picked_on_page(browser) == ["001-00.png", "001-01.png"], timeout=10)
    browser.refresh()  # a reload loses nothing
    wait_for(lambda: picked_on_page(browser) == ["000-00.png", "000-01.png"])

    shot = tmp_path / "review.png"
    browser.save_screenshot(str(shot))
    image = Image.open(shot).convert("RGB")
    assert len(image.getcolors(maxcolors=1 << 20) or ()) > 50  # the generated images are on it, not a blank page

    browser.find_element(By.ID, "train").click()
    status = browser.find_element(By.ID, "status")
    wait_for(lambda: status.get_attribute("data-state") in ("done", "error"), timeout=120)
    assert status.get_attribute("data-state") == "done", status.text
    assert (round_dir / "adapter" / "adapter.safetensors").is_file()
    assert len(read_picks(round_dir)) == 4


def test_the_server_serves_only_pool_images(server):
    import urllib.error
    import urllib.request

    url, _ = server
    with urllib.request.urlopen(url + "pool/000-00.png") as response:
        assert response.headers["content-type"] == "image/png"
    for bad in ("pool/..%2Fmanifest.json", "pool/nope.png"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url + bad)
        assert error.value.code == 404


def test_oversized_and_non_json_bodies_are_refused(server):
    """The headers decide: the server answers before reading a body, so the oversized one is announced by its
    Content-Length and never sent (a client still sending when the server closes would see a reset instead)."""
    import http.client
    from urllib.parse import urlsplit

    url, _ = server
    address = urlsplit(url)
    png = (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", 415)
    huge = (None, "application/json", 413)
    for body, kind, code in (png, huge):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        connection.putrequest("POST", "/api/picks")
        connection.putheader("Content-Type", kind)
        connection.putheader("Content-Length", str(1 << 20 if body is None else len(body)))
        connection.endheaders(body)
        assert connection.getresponse().status == code
        connection.close()


def test_training_without_picks_is_refused(server):
    import urllib.error
    import urllib.request

    url, _ = server
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(url + "api/train", method="POST"))
    assert error.value.code == 409


def test_review_of_a_folder_that_is_not_a_round_says_so(tmp_path):
    from styledrop.cli import main

    assert main(["review", str(tmp_path)]) == 2
