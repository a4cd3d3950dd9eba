"""Drives the dashboards in headless Chromium (Selenium + Debian's
chromedriver) the way a viewer would, and checks what they show against
the steward's exact numbers.

usage: dashboard_check.py URL CONNINFO_ANALYST ANALYST PASSWORD STEWARD PASSWORD K SCREENSHOT
                          [EXTRA_DASHBOARD [STORE DELIVERY]]

EXTRA_DASHBOARD names a dashboard from a file that must be listed and drawn.
DELIVERY is a folder of files that, copied into the served STORE, make a
new delivery: the open overview must show it without being reloaded.

Prints "dashboard check: ok" when every check passed.
"""

import json
import shutil
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib

import psycopg
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

URL, CONNINFO, ANALYST, ANALYST_PW, STEWARD, STEWARD_PW, K, SHOT = sys.argv[1:9]
EXTRA = sys.argv[9] if len(sys.argv) > 9 else None
STORE, DELIVERY = (sys.argv[10], sys.argv[11]) if len(sys.argv) > 11 else (None, None)
K = int(K)
URL = URL.rstrip("/")


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def check(ok, message):
    if not ok:
        fail(message)


def wait(what, predicate, timeout=90):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # the page is still changing
            last = e
        time.sleep(0.2)
    fail(f"timed out waiting for {what} (last: {last!r})")


# ---------- an HTTP client of our own, for the steward's exact numbers ----------

class Client:
    def __init__(self, user, password):
        self.cookie = None
        status, body, headers = self.request("POST", "/api/login", {"user": user, "password": password})
        check(status == 200, f"steward login: {status} {body}")
        self.cookie = headers["Set-Cookie"].split(";")[0]

    def request(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(URL + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read() or b"null"), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers

    def get(self, path):
        status, body, _ = self.request("GET", path)
        check(status == 200, f"{path}: {status} {body}")
        return body


# ---------- PNG pixels, without an imaging library ----------

def png_pixels(data):
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    check(depth == 8 and color in (2, 6) and interlace == 0, f"unexpected PNG format {header}")
    bpp = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def colourful_pixels(png):
    width, height, bpp, rows = png_pixels(png)
    colours, coloured = set(), 0
    for row in rows[::2]:
        for x in range(0, width * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if max(r, g, b) - min(r, g, b) > 40:  # not white, grey or black: drawn by a chart
                coloured += 1
                colours.add((r >> 4, g >> 4, b >> 4))
    return coloured, len(colours)


# ---------- the browser ----------

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,2400", "--lang=en-US"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_script_timeout(120)


def js(script, *args):
    return driver.execute_script(script, *args)


def fetch_json(path):
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.json().then(b => done([r.status, b])))"
        ".catch(e => done([0, String(e)]));", path)


def panels_settled():
    states = js("return [...document.querySelectorAll('[data-panel]')].map(p => p.dataset.state)")
    return states if states and all(s in ("ready", "error") for s in states) else None


try:
    driver.get(URL + "/")
    form = wait("the login form", lambda: driver.find_element(By.ID, "login").is_displayed() and driver.find_element(By.ID, "login"))

    # A wrong password is refused, and no session cookie is set.
    form.find_element(By.NAME, "user").send_keys(ANALYST)
    form.find_element(By.NAME, "password").send_keys("not-" + ANALYST_PW + Keys.ENTER)
    message = wait("the refusal", lambda: driver.find_element(By.ID, "login-error").text)
    check("wrong user name or password" in message, f"refusal message: {message!r}")
    check(not [c for c in driver.get_cookies() if c["name"] == "tsunagu_session"], "a cookie was set for a wrong password")
    check(fetch_json("/api/dashboards")[0] == 401, "dashboards served without a login")

    # The analyst logs in: the overview draws.
    form.find_element(By.NAME, "user").clear()
    form.find_element(By.NAME, "user").send_keys(ANALYST)
    form.find_element(By.NAME, "password").send_keys(ANALYST_PW + Keys.ENTER)
    wait("the overview", lambda: driver.find_element(By.ID, "board").is_displayed()
         and js("return document.getElementById('board').dataset.dashboard") == "overview")
    states = wait("the overview's panels", panels_settled)
    errors = js("return [...document.querySelectorAll('[data-panel][data-state=error]')].map(p => p.innerText)")
    check(not errors, f"panels failed: {errors}")
    charts = js("return [...document.querySelectorAll('[data-panel]')].filter(p => !['table','number'].includes(p.dataset.chart)).length")
    canvases = js("return document.querySelectorAll('[data-panel] canvas').length")
    check(charts >= 4 and canvases >= charts, f"{charts} chart panels but {canvases} canvases")
    # Every chart's canvas has drawn pixels.
    drawn = js("""return [...document.querySelectorAll('[data-panel] canvas')].map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
    check(all(n > 500 for n in drawn), f"blank canvases: {drawn}")
    check(driver.find_element(By.CSS_SELECTOR, "[data-chart=number] .number").text.strip() != "", "no person count")
    time.sleep(0.5)
    png = driver.get_screenshot_as_png()
    with open(SHOT, "wb") as f:
        f.write(png)
    coloured, colours = colourful_pixels(png)
    check(coloured > 2000 and colours > 8, f"the screenshot looks blank ({coloured} coloured pixels, {colours} colours)")

    # Every number an analyst sees rests on at least k persons, and is near the steward's exact number.
    steward = Client(STEWARD, STEWARD_PW)
    boards = [d["id"] for d in fetch_json("/api/dashboards")[1]]
    check({"overview", "cohorts", "quality"} <= set(boards), f"dashboards: {boards}")
    compared = 0
    for board_id in [b for b in boards if b not in ("quality",)]:
        board = fetch_json(f"/api/dashboards/{board_id}")[1]
        for i, p in enumerate(board["panels"]):
            if p["chart"] == "table" or not p.get("y"):
                continue
            status, seen = fetch_json(f"/api/dashboards/{board_id}/panels/{i}")
            check(status == 200, f"{board_id}/{i}: {status} {seen}")
            check(seen["released"], f"{board_id}/{i}: an analyst was shown exact numbers")
            exact = steward.get(f"/api/dashboards/{board_id}/panels/{i}")
            check(not exact["released"], "the steward's numbers are released")
            names = [c["name"] for c in seen["columns"]]
            y = names.index(p["y"])
            keys = lambda row: tuple(v for j, v in enumerate(row) if j != y)
            truth = {keys(r): r[y] for r in exact["rows"]}
            for row in seen["rows"]:
                v = row[y]
                if v is None:
                    continue
                check(v >= K, f"{board_id}/{i}: {p['y']} = {v} is under k = {K} for {keys(row)}")
                t = truth.get(keys(row))
                check(t is not None and t >= K, f"{board_id}/{i}: released {v} where the truth is {t} for {keys(row)}")
                check(abs(v - t) <= max(10, 0.05 * t), f"{board_id}/{i}: released {v} far from the truth {t}")
                compared += 1
            shown = {keys(r) for r in seen["rows"] if r[y] is not None}
            for key, t in truth.items():
                if t is not None and 0 < t < K:
                    check(key not in shown, f"{board_id}/{i}: a cell of {t} persons (< k) is shown")
    check(compared >= 30, f"only {compared} released numbers compared")

    # A dashboard from a file is listed and drawn.
    if EXTRA:
        check(EXTRA in boards, f"{EXTRA} is not among {boards}")
        driver.get(f"{URL}/#/{EXTRA}")
        wait(f"the {EXTRA} dashboard", lambda: js("return document.getElementById('board').dataset.dashboard") == EXTRA)
        wait(f"the {EXTRA} panels", panels_settled)
        errors = js("return [...document.querySelectorAll('[data-panel][data-state=error]')].map(p => p.innerText)")
        check(not errors, f"panels failed: {errors}")
        drawn = js("""return [...document.querySelectorAll('[data-panel] canvas')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
        check(drawn and all(n > 500 for n in drawn), f"{EXTRA}: blank canvases {drawn}")
        driver.get(URL + "/#/overview")
        wait("the overview again", lambda: js("return document.getElementById('board').dataset.dashboard") == "overview")
        wait("the overview's panels", panels_settled)

    # The knowledge graph: a concept's network is drawn and its strongest
    # associations listed, for another code given as a parameter too.
    if "knowledge-graph" in boards:
        for code, expect in (("S72.0", "Hemiarthroplasty of hip"), ("ING-C08CA01", "furosemide")):
            driver.get(URL + "/#/overview")
            wait("the overview", lambda: js("return document.getElementById('board').dataset.dashboard") == "overview")
            wait("the overview's panels", panels_settled)
            driver.get(f"{URL}/#/knowledge-graph?code={code}")
            wait(f"the knowledge graph of {code}", lambda: js("return document.getElementById('board').dataset.dashboard") == "knowledge-graph")
            wait(f"the knowledge graph panels of {code}", panels_settled)
            errors = js("return [...document.querySelectorAll('[data-panel][data-state=error]')].map(p => p.innerText)")
            check(not errors, f"knowledge graph panels failed: {errors}")
            listed = driver.find_element(By.CSS_SELECTOR, "[data-panel='1']").text
            check(expect in listed, f"{code}: {expect} is not among the strongest associations: {listed[:300]}")
            drawn = js("""const c = document.querySelector("[data-panel='0'] canvas"); if (!c) return 0;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;""")
            check(drawn > 500, f"{code}: the network is blank ({drawn} pixels)")
        driver.get(URL + "/#/overview")
        wait("the overview again", lambda: js("return document.getElementById('board').dataset.dashboard") == "overview")
        wait("the overview's panels", panels_settled)

    # A delivery lands in the store: the open overview shows it without being reloaded.
    if DELIVERY:
        number = lambda: js("return document.querySelector('[data-chart=number] .number').dataset.value")
        persons_before = int(number())
        exact_before = steward.get("/api/dashboards/overview/panels/0")["rows"][0][0]
        js("window.__not_reloaded = 7")
        shutil.copytree(DELIVERY, STORE, dirs_exist_ok=True)
        wait("the delivery on the open overview", lambda: number() and int(number()) != persons_before, 60)
        check(js("return window.__not_reloaded") == 7, "the page was reloaded")
        persons_after = int(number())
        exact_after = steward.get("/api/dashboards/overview/panels/0")["rows"][0][0]
        check(exact_after > exact_before, f"the steward's count did not grow: {exact_before} -> {exact_after}")
        check(abs(persons_after - exact_after) <= max(10, 0.05 * exact_after),
              f"released {persons_after} after the delivery, truth {exact_after}")
        wait("the overview's panels after the delivery", panels_settled)
        errors = js("return [...document.querySelectorAll('[data-panel][data-state=error]')].map(p => p.innerText)")
        check(not errors, f"panels failed after the delivery: {errors}")

    # Keyboard: the cohorts dashboard is reached by Tab and Enter from the navigation.
    link = driver.find_element(By.CSS_SELECTOR, "nav a[href='#/cohorts']")
    js("arguments[0].focus()", driver.find_element(By.CSS_SELECTOR, "nav a"))
    for _ in range(10):
        if driver.switch_to.active_element == link:
            break
        driver.switch_to.active_element.send_keys(Keys.TAB)
    check(driver.switch_to.active_element == link, "the cohorts link is not reachable with Tab")
    link.send_keys(Keys.ENTER)
    wait("the cohorts dashboard", lambda: js("return document.getElementById('board').dataset.dashboard") == "cohorts")
    wait("the cohorts panels", panels_settled)
    before = js("return document.querySelector('[data-panel=\"1\"]').dataset.rows")
    js("window.__not_reloaded = 42")

    # A cohort saved over SQL appears on the open page without reloading it.
    with psycopg.connect(CONNINFO, autocommit=True) as conn:
        conn.execute("CREATE COHORT dashboard_live AS SELECT person_id FROM ndb.person")
    wait("the new cohort on the open page", lambda: "dashboard_live" in driver.find_element(By.CSS_SELECTOR, "[data-panel='1']").text, 30)
    check(js("return window.__not_reloaded") == 42, "the page was reloaded")
    after = js("return document.querySelector('[data-panel=\"1\"]').dataset.rows")
    check(int(after) == int(before) + 1, f"cohort rows {before} -> {after}")
    size = js("""const t = document.querySelector("[data-panel='1'] table");
        const cols = [...t.querySelectorAll('th')].map(th => th.textContent);
        const row = [...t.querySelectorAll('tbody tr')].find(r => r.textContent.includes('dashboard_live'));
        return row.children[cols.indexOf('size')].dataset.value""")
    truth = steward.get("/api/dashboards/overview/panels/1")
    ndb = [r for r in truth["rows"] if r[0] == "ndb"][0][1]
    check(abs(int(size) - ndb) <= max(10, 0.05 * ndb), f"cohort size {size} vs ndb persons {ndb}")

    # Japanese.
    driver.find_element(By.ID, "lang").click()
    wait("the Japanese title", lambda: driver.find_element(By.ID, "title").text == "保存したコホート")
    check(js("return document.documentElement.lang") == "ja", "lang attribute")
    driver.find_element(By.ID, "lang").click()

    # Log out: the session ends.
    driver.find_element(By.ID, "logout").click()
    wait("the login form again", lambda: driver.find_element(By.ID, "login").is_displayed())
    check(fetch_json("/api/me")[0] == 401, "the session survived the logout")
finally:
    driver.quit()

print(f"dashboard check: ok ({compared} released numbers compared with the steward's)")
