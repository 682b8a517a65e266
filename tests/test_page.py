"""The web page in a real browser (Debian's headless Chromium, driven by Selenium): an
upload comes back as a label, probabilities and a timeline; every colour it draws with has
the contrast WCAG asks (text 4.5:1, lines and marks 3:1); the chart stays readable at phone
width; a beep gets a no-speech notice. Skips where Chromium or its driver is missing.

``EMOTRACE_RECORD_SCREENSHOT=1`` writes the screenshot the README shows (docs/service_page.png).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from emotrace.labels import EMOTION_COLOURS
from emotrace.service import create_app
from emotrace.service.app import LOOPBACK_NAMES

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DOCS = Path(__file__).resolve().parent.parent / "docs"
TEXT_CONTRAST, GRAPHICS_CONTRAST = 4.5, 3.0
PANEL_BACKGROUNDS = ("#ffffff", "#fafbfc")  # the page, and the waveform panel
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


def luminance(colour: str) -> float:
    """Relative luminance (WCAG 2) of ``#rrggbb`` or ``rgb(a)(r, g, b[, a])``."""
    if colour.startswith("#"):
        channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        channels = [float(part) for part in re.findall(r"[\d.]+", colour)[:3]]
    linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_emotion_colour_stands_out_on_the_backgrounds_it_is_drawn_on():
    for label, colour in EMOTION_COLOURS.items():
        for background in PANEL_BACKGROUNDS:
            assert contrast(colour, background) >= GRAPHICS_CONTRAST, (label, colour, background)


@pytest.fixture(scope="module")
def server():
    """The service on a free loopback port, served by uvicorn in a thread."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(allowed_hosts=LOOPBACK_NAMES)
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    try:
        while not instance.started:
            assert thread.is_alive(), "the server did not start"
            threading.Event().wait(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        instance.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,1300",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def submit(browser, server: str, path: Path, done: str = "Done") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "model-info").text.startswith("Model "))
    browser.find_element(By.ID, "audio-file").send_keys(str(path))
    browser.find_element(By.ID, "upload-button").click()
    WebDriverWait(browser, 180).until(lambda b: b.find_element(By.ID, "status").text.startswith((done, "The service")))
    assert browser.find_element(By.ID, "status").text.startswith(done), browser.find_element(By.ID, "status").text


# Every visible element with text of its own: its colour and the first opaque background
# behind it. SVG text: its fill, on the plot's white.
COLLECT_TEXT = """
const out = [];
function background(node) {
  for (let at = node; at && at.nodeType === 1; at = at.parentElement) {
    const colour = getComputedStyle(at).backgroundColor;
    if (colour && !/rgba\\(.*, 0\\)$/.test(colour) && colour !== "transparent") return colour;
  }
  return "rgb(255, 255, 255)";
}
for (const node of document.querySelectorAll("body *")) {
  const own = [...node.childNodes].some((child) => child.nodeType === 3 && child.textContent.trim());
  const box = node.getBoundingClientRect();
  if (!own || !box.width || node.closest("[hidden]") || node.closest(".visually-hidden")) continue;
  const style = getComputedStyle(node);
  if (node instanceof SVGElement) out.push([node.textContent.trim().slice(0, 30), style.fill, "rgb(255, 255, 255)"]);
  else out.push([node.textContent.trim().slice(0, 30), style.color, background(node)]);
}
return out;
"""

# Every line and mark of the timeline that carries meaning: the emotion curves, the
# attention line, the regions' outlines and the waveform.
COLLECT_GRAPHICS = """
const svg = document.getElementById("timeline");
const marks = [];
for (const line of svg.querySelectorAll("polyline")) marks.push(["curve", getComputedStyle(line).stroke]);
for (const rect of svg.querySelectorAll("rect[fill-opacity]")) marks.push(["region", rect.getAttribute("stroke")]);
for (const wave of svg.querySelectorAll("polygon")) marks.push(["waveform", wave.getAttribute("fill")]);
return marks;
"""


def test_an_upload_shows_label_probabilities_and_timeline_in_colours_with_enough_contrast(
    browser, server, fixture_clips, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    submit(browser, server, fixture_clips[0])
    labels = [
        label.strip() for label in browser.find_element(By.ID, "model-info").text.split(":")[1].split(".")[0].split(",")
    ]
    verdict = browser.find_element(By.ID, "verdict").text
    assert re.match(rf"^({'|'.join(labels)}) \d+(\.\d)?% probability$", verdict), verdict
    rows = browser.find_elements(By.CSS_SELECTOR, "#scores tr")
    assert len(rows) == len(labels)
    shares = [float(row.find_elements(By.TAG_NAME, "td")[1].text.rstrip("%")) for row in rows]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(100, abs=len(labels))
    assert verdict.split()[0] == rows[0].find_elements(By.TAG_NAME, "td")[0].text.strip()
    curves = browser.find_elements(By.CSS_SELECTOR, "#timeline polyline")
    assert len(curves) == len(labels) + 1  # one per emotion, and the attention
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline polygon")  # the waveform, decoded by the browser
    assert browser.find_elements(By.CSS_SELECTOR, "#regions li")

    for text, colour, background in browser.execute_script(COLLECT_TEXT):
        assert contrast(colour, background) >= TEXT_CONTRAST, (text, colour, background)
    for kind, colour in browser.execute_script(COLLECT_GRAPHICS):
        backgrounds = ("#fafbfc",) if kind == "waveform" else PANEL_BACKGROUNDS
        for background in backgrounds:
            assert contrast(colour, background) >= GRAPHICS_CONTRAST, (kind, colour, background)

    button = browser.find_element(By.ID, "upload-button")
    browser.execute_script("arguments[0].focus()", browser.find_element(By.ID, "audio-file"))
    ActionChains(browser).send_keys(Keys.TAB).perform()  # keyboard focus: the ring shows
    assert browser.switch_to.active_element == button
    assert browser.execute_script("return arguments[0].matches(':focus-visible')", button)
    ring = browser.execute_script("return getComputedStyle(arguments[0]).outlineColor", button)
    assert contrast(ring, "#ffffff") >= GRAPHICS_CONTRAST, ring
    browser.execute_script("arguments[0].disabled = true", button)
    edge, fill, text = browser.execute_script(
        "const s = getComputedStyle(arguments[0]); return [s.borderTopColor, s.backgroundColor, s.color]", button
    )
    assert contrast(edge, "#ffffff") >= GRAPHICS_CONTRAST and contrast(text, fill) >= TEXT_CONTRAST, (edge, fill, text)
    browser.execute_script("arguments[0].disabled = false", button)

    screenshot = (
        DOCS / "service_page.png" if os.environ.get("EMOTRACE_RECORD_SCREENSHOT") == "1" else tmp_path / "page.png"
    )
    browser.find_element(By.TAG_NAME, "body").screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_at_phone_width_the_chart_text_stays_readable(browser, server, fixture_clips):
    from selenium.webdriver.common.by import By

    browser.set_window_size(390, 900)
    try:
        submit(browser, server, fixture_clips[1])
        svg = browser.find_element(By.ID, "timeline")
        sizes = browser.execute_script(
            "return [...arguments[0].querySelectorAll('text')].map((t) => t.getBoundingClientRect().height)", svg
        )
        assert sizes and min(sizes) >= 11, sizes  # 12 px text, not a 960-wide drawing shrunk to a third
        ticks = [t.text for t in svg.find_elements(By.CSS_SELECTOR, "text[text-anchor='middle']") if t.text]
        assert 3 <= len(ticks) <= 8, ticks
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(1200, 1300)


def test_a_beep_gets_a_no_speech_notice_instead_of_an_emotion(browser, server, write_tone):
    from selenium.webdriver.common.by import By

    submit(browser, server, write_tone("beep.wav", freq=1000, seconds=2.0))
    assert browser.find_element(By.ID, "verdict").text == "No speech"
    notice = browser.find_element(By.ID, "no-speech")
    assert notice.is_displayed() and "too little to read an emotion from" in notice.text
    assert not browser.find_element(By.ID, "analysis").is_displayed()
