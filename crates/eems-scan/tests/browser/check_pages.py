"""The HTML reports in a real browser: headless Chromium driven over WebDriver (selenium).

    check_pages.py check --fleet REPORT.html --drift DRIFT.html --old OLD.json --new NEW.json
    check_pages.py screenshot PAGE.html OUT.png [--size 1400,1000]

`check` runs every check, prints one line per check and exits 1 listing every failure (so
one run shows all defects). The JSON files are the two scans the drift page compares; the
server counts are checked against them rather than against the page.

Chromium and chromedriver: CHROMIUM and CHROMEDRIVER, else chromium and chromedriver on
PATH. Both are local programs; the pages load nothing and Chromium's own network
features are switched off.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

# Selenium Manager would otherwise look for drivers online; we always name ours.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

STATUS_ORDER = ["critical", "error", "warning", "skipped", "ok"]
VERDICT_ORDER = ["regression", "improvement", "neutral"]
# HealthChecker's colours by severity; a cell without one is Grey.
COLOUR_RANK = {"Red": 0, "Yellow": 1, "": 2, "Green": 3}
UNKNOWN = "\u2014"
VERDICT_COLUMNS = ["eems", "service", "pattern", "fetch", "cert", "iis", "blocked", "applied",
                   "telemetry"]
# The evidence verdicts' columns, with every colour the demo fleet gives each of them: a
# sort check over one colour could not fail on severity.
EVIDENCE_COLOURS = {
    "fetch": {"Yellow", "", "Green"},
    "cert": {"Yellow", ""},
    "iis": {"Yellow", "", "Green"},
}


def program(env, name):
    path = os.environ.get(env) or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        sys.exit(f"{name} not found: install it (Debian: chromium, chromium-driver) or set {env}")
    return path


class Browser:
    """One Chromium with a throw-away profile."""

    def __init__(self, width=1280, height=1000, javascript=True):
        self.profile = tempfile.mkdtemp(prefix="eems-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = program("CHROMIUM", "chromium")
        for f in FLAGS:
            options.add_argument(f)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=program("CHROMEDRIVER", "chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class Checks:
    def __init__(self):
        self.failures = []

    def check(self, ok, what, detail=""):
        print(("ok:   " if ok else "FAIL: ") + what + ("" if ok else f": {detail}"), flush=True)
        if not ok:
            self.failures.append(f"{what}: {detail}")


def natural(text):
    """Digit runs as numbers, the rest case-insensitively: EX2 < EX10, 15.2.986 < 15.2.1544."""
    return [
        (0, int(p), "") if p.isdigit() else (1, 0, p)
        for p in re.split(r"(\d+)", text.strip().lower())
        if p
    ]


def version(build):
    m = re.match(r"(\d+(?:\.\d+)*)", build)
    return (0, tuple(int(x) for x in m.group(1).split("."))) if m else (1, ())


def is_sorted(keys, ascending):
    pairs = zip(keys, keys[1:])
    return all(a <= b for a, b in pairs) if ascending else all(a >= b for a, b in pairs)


# A word broken across lines has client rects on more than one line. Only a word wider
# than 40% of the window (a path, a URL, a probe's garbage) may break: no line of a
# table cell could hold it, and paper cannot scroll.
BROKEN_WORDS_JS = r"""
var out = [], limit = 0.4 * window.innerWidth;
var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
var n;
while ((n = walker.nextNode())) {
  var re = /\S+/g, m;
  while ((m = re.exec(n.data))) {
    var r = document.createRange();
    r.setStart(n, m.index);
    r.setEnd(n, m.index + m[0].length);
    var tops = [], width = 0;
    Array.prototype.forEach.call(r.getClientRects(), function (rect) {
      var t = Math.round(rect.top);
      width += rect.width;
      if (rect.width > 0 && tops.indexOf(t) < 0) { tops.push(t); }
    });
    if (tops.length > 1 && width <= limit) { out.push(m[0]); }
  }
}
return out;
"""

# Relative luminance and contrast ratio (WCAG 2.x) of every coloured element.
CONTRAST_JS = r"""
function lum(c) {
  var v = c.match(/[\d.]+/g).slice(0, 3).map(function (x) {
    x = x / 255;
    return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
return Array.prototype.map.call(document.querySelectorAll(".Red, .Yellow, .Green"), function (el) {
  var s = getComputedStyle(el);
  var a = lum(s.color), b = lum(s.backgroundColor);
  return [el.className, el.textContent.trim().slice(0, 40),
          (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
});
"""


def console_errors(driver):
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def rows(driver, table):
    return driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")


def visible_rows(driver, table):
    return driver.execute_script(
        f"return Array.prototype.filter.call(document.querySelectorAll('#{table} tbody tr'),"
        " function (r) { return !r.hidden; }).length;"
    )


def shown_text(driver):
    return driver.find_element(By.ID, "shown").text


def row_facts(driver, table):
    """Per row in page order: each column's text and class, and whether a cell spans."""
    return driver.execute_script(
        """
        return Array.prototype.map.call(document.querySelectorAll('#' + arguments[0] + ' tbody tr'),
          function (tr) {
            var cells = {};
            Array.prototype.forEach.call(tr.cells, function (td) {
              var col = td.getAttribute('data-col') || 'span';
              cells[col] = [td.textContent.trim(), (td.className || '').replace('pre', '').trim()];
            });
            return {cells: cells, status: tr.getAttribute('data-status'),
                    verdict: tr.getAttribute('data-verdict')};
          });
        """,
        table,
    )


def fleet_key(col, row):
    cells = row["cells"]
    if col == "server":
        return natural(cells["server"][0])
    if col == "status":
        return STATUS_ORDER.index(cells["status"][0])
    if col == "build":
        return version(cells["build"][0])
    if col == "site":
        return natural(cells["site"][0])
    # A check column: error and skipped rows together after every real value.
    if "span" in cells:
        return (1, 0 if row["status"] == "error" else 1, 0, [])
    text, colour = cells[col]
    rank = 4 if text == UNKNOWN else COLOUR_RANK.get(colour, 2)
    return (0, 0, rank, natural(text))


def drift_key(col, row):
    text, colour = row["cells"][col]
    if col == "verdict":
        return VERDICT_ORDER.index(text)
    if col in ("old", "new"):
        # As the fleet's check cells: by colour, an absent value ("(not in scan)") last.
        absent = text == UNKNOWN or (text.startswith("(not ") and text.endswith(")"))
        return (4 if absent else COLOUR_RANK.get(colour, 2), natural(text))
    return natural(text)


def check_sorting(c, driver, table, key, page):
    headers = driver.find_elements(By.CSS_SELECTOR, f"#{table} thead th")
    for th in headers:
        col = th.get_attribute("data-col")
        button = th.find_element(By.CSS_SELECTOR, "button.sort")
        for ascending in (True, False):
            button.click()
            want = "ascending" if ascending else "descending"
            c.check(th.get_attribute("aria-sort") == want, f"{page}: {col} sets aria-sort={want}",
                    th.get_attribute("aria-sort"))
            facts = row_facts(driver, table)
            keys = [key(col, r) for r in facts]
            bad = next((i for i in range(len(keys) - 1)
                        if (keys[i] > keys[i + 1] if ascending else keys[i] < keys[i + 1])), None)
            c.check(bad is None, f"{page}: sorting by {col} {want} follows its order",
                    "" if bad is None else
                    f"row {bad + 1} {facts[bad]['cells']} before {facts[bad + 1]['cells']}")


def check_accessible_names(c, driver, table, page):
    for th in driver.find_elements(By.CSS_SELECTOR, f"#{table} thead th"):
        button = th.find_element(By.CSS_SELECTOR, "button.sort")
        name = button.accessible_name
        c.check(re.fullmatch(r"[A-Za-z ]+", name or "") is not None,
                f"{page}: sort button {th.get_attribute('data-col')} is named by its heading only",
                repr(name))
    caption = driver.find_elements(By.CSS_SELECTOR, f"#{table} caption")
    c.check(len(caption) == 1 and caption[0].text.strip() != "", f"{page}: table has a caption",
            caption)


def check_keyboard(c, driver, table, page):
    th = driver.find_element(By.CSS_SELECTOR, f"#{table} thead th")
    button = th.find_element(By.CSS_SELECTOR, "button.sort")
    driver.execute_script("arguments[0].focus();", button)
    active = driver.switch_to.active_element
    c.check(active == button, f"{page}: a sort button takes keyboard focus")
    active.send_keys(Keys.ENTER)
    first = th.get_attribute("aria-sort")
    driver.switch_to.active_element.send_keys(Keys.SPACE)
    second = th.get_attribute("aria-sort")
    c.check((first, second) in (("ascending", "descending"), ("descending", "ascending")),
            f"{page}: Enter and Space sort by the focused heading", (first, second))


def check_filters(c, driver, table, page):
    total = len(rows(driver, table))
    c.check(shown_text(driver) == f"{total} of {total} shown", f"{page}: all rows shown at first",
            shown_text(driver))
    for sel in driver.find_elements(By.CSS_SELECTOR, "select[data-filter]"):
        attr = "data-" + sel.get_attribute("data-filter")
        select = Select(sel)
        values = [o.get_attribute("value") for o in select.options]
        for value in values:
            select.select_by_value(value)
            want = total if value == "" else sum(
                1 for r in rows(driver, table) if r.get_attribute(attr) == value)
            got = visible_rows(driver, table)
            c.check(got == want and shown_text(driver) == f"{want} of {total} shown",
                    f"{page}: filter {attr}={value!r} shows its rows and says so",
                    f"{got} visible, {want} expected, says {shown_text(driver)!r}")
        select.select_by_value("")
    search = driver.find_element(By.ID, "search")
    for needle in ("ex1", "timeout", "no-such-text-anywhere"):
        search.clear()
        search.send_keys(needle)
        want = sum(1 for r in rows(driver, table)
                   if needle in r.get_attribute("textContent").lower())
        got = visible_rows(driver, table)
        c.check(got == want and shown_text(driver) == f"{want} of {total} shown",
                f"{page}: search {needle!r} shows its rows and says so",
                f"{got} visible, {want} expected, says {shown_text(driver)!r}")
    search.clear()
    search.send_keys(Keys.BACKSPACE)
    # Filters survive sorting.
    sel = driver.find_elements(By.CSS_SELECTOR, "select[data-filter]")[0]
    select = Select(sel)
    select.select_by_index(1)
    before = visible_rows(driver, table)
    driver.find_elements(By.CSS_SELECTOR, f"#{table} button.sort")[0].click()
    c.check(visible_rows(driver, table) == before and shown_text(driver).startswith(f"{before} of"),
            f"{page}: a filter survives sorting", shown_text(driver))
    select.select_by_value("")


def check_contrast(c, driver, page):
    low = [x for x in driver.execute_script(CONTRAST_JS) if x[2] < 4.5]
    c.check(not low, f"{page}: every coloured cell has 4.5:1 text contrast",
            [f"{cls} {text!r} {ratio:.2f}:1" for cls, text, ratio in low[:5]])


def check_layout(c, driver, page, media):
    driver.execute_script(
        "document.querySelectorAll('details').forEach(function (d) { d.open = true; });")
    width = driver.execute_script("return document.documentElement.scrollWidth;")
    viewport = driver.execute_script("return window.innerWidth;")
    c.check(width <= viewport, f"{page} ({media}, {viewport} px): the page is no wider than the window",
            f"{width} px wide")
    broken = driver.execute_script(BROKEN_WORDS_JS)
    c.check(not broken, f"{page} ({media}, {viewport} px): no word is broken across lines",
            broken[:8])


def check_print(c, driver, page):
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        # Letter: 8.5 in less Chromium's default margins (0.4 in each side), at 96 px/in.
        driver.set_window_size(739, 1000)
        check_layout(c, driver, page, "print")
        adjust = driver.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('.Red, .Yellow, .Green'),"
            " function (el) { return getComputedStyle(el).printColorAdjust; });")
        c.check(adjust and all(a == "exact" for a in adjust),
                f"{page} (print): coloured cells keep their colours on paper", set(adjust))
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def open_page(browser, path):
    browser.driver.get("file://" + os.path.abspath(path))


def check_fleet(c, browser, path):
    d = browser.driver
    open_page(browser, path)
    page = "fleet"
    facts = row_facts(d, "matrix")
    total = len(facts)
    tile = lambda s: int(d.find_element(  # noqa: E731
        By.CSS_SELECTOR, f'#summary .tile[data-status="{s}"] .count').text)
    c.check(tile("total") == total, f"{page}: the servers tile counts the rows", tile("total"))
    for s in STATUS_ORDER:
        n = sum(1 for r in facts if r["status"] == s)
        c.check(tile(s) == n, f"{page}: the {s} tile counts its rows", f"{tile(s)} vs {n}")
    missing = d.find_elements(By.CSS_SELECTOR, '#summary .tile[data-status="not-in-inventory"]')
    listed = len(d.find_elements(By.CSS_SELECTOR, "table.coverage tbody tr"))
    c.check(len(missing) == 1 and int(missing[0].text.split()[0]) == listed,
            f"{page}: a tile counts the org servers missing from the inventory",
            f"{[m.text for m in missing]} vs {listed} listed")
    heads = [th.get_attribute("data-col") for th in d.find_elements(By.CSS_SELECTOR, "#matrix thead th")]
    c.check(heads[2:-2] == VERDICT_COLUMNS, f"{page}: the check columns, evidence included", heads)
    for col, want in EVIDENCE_COLOURS.items():
        seen = {r["cells"][col][1] for r in facts if col in r["cells"]}
        c.check(want <= seen, f"{page}: the {col} column holds every colour it sorts by",
                f"{sorted(seen)}, want {sorted(want)}")
    check_sorting(c, d, "matrix", fleet_key, page)
    check_accessible_names(c, d, "matrix", page)
    check_keyboard(c, d, "matrix", page)
    check_filters(c, d, "matrix", page)
    check_contrast(c, d, page)
    # A server link opens its details.
    closed = d.execute_script(
        "var d = document.querySelector('details:not([open])'); return d ? d.id : null;")
    if closed:
        link = d.find_element(By.CSS_SELECTOR, f'#matrix a[href="#{closed}"]')
        d.execute_script("arguments[0].scrollIntoView();", link)
        link.click()
        is_open = d.execute_script("return document.getElementById(arguments[0]).open;", closed)
        c.check(is_open, f"{page}: a server link opens the details it points at", closed)
    else:
        c.check(False, f"{page}: a server link opens the details it points at",
                "no closed details to try")
    c.check(not console_errors(d), f"{page}: no console errors", console_errors(d))


def check_drift(c, browser, path, old_json, new_json):
    d = browser.driver
    open_page(browser, path)
    page = "drift"
    facts = row_facts(d, "drift")
    for v in VERDICT_ORDER:
        n = int(d.find_element(By.CSS_SELECTOR, f'.tile[data-verdict="{v}"] .count').text)
        want = sum(1 for r in facts if r["verdict"] == v)
        c.check(n == want, f"{page}: the {v} tile counts its rows", f"{n} vs {want}")
    names = []
    for p in (old_json, new_json):
        with open(p, encoding="utf-8") as f:
            names.append({s["server"].lower() for s in json.load(f)["servers"]})
    changed = {r["cells"]["server"][0].lower() for r in facts} - {"(organisation)"}
    want = f"{len(changed)} of {len(names[0] | names[1])} servers changed"
    got = next((" ".join(t.text.split()) for t in d.find_elements(By.CSS_SELECTOR, ".tile")
                if "servers changed" in t.text), None)
    c.check(got == want, f"{page}: the servers tile counts every server of both scans",
            f"says {got!r}, scans say {want!r}")
    raw = [r["cells"]["field"][0] for r in facts if "_" in r["cells"]["field"][0]]
    c.check(not raw, f"{page}: changes are named as the console names them", raw)
    uncoloured = [(r["cells"]["server"][0], side, r["cells"][side][0])
                  for r in facts if r["cells"]["field"][0] in ("status", "server")
                  for side in ("old", "new")
                  if r["cells"][side][0] in ("ok", "warning", "critical", "error")
                  and not r["cells"][side][1]]
    c.check(not uncoloured, f"{page}: old and new statuses carry their colours", uncoloured)
    check_sorting(c, d, "drift", drift_key, page)
    check_accessible_names(c, d, "drift", page)
    check_keyboard(c, d, "drift", page)
    check_filters(c, d, "drift", page)
    check_contrast(c, d, page)
    c.check(not console_errors(d), f"{page}: no console errors", console_errors(d))


def check_without_javascript(c, path, page, table):
    b = Browser(javascript=False)
    try:
        open_page(b, path)
        d = b.driver
        total = len(rows(d, table))
        hidden = sum(1 for r in rows(d, table) if not r.is_displayed())
        c.check(total > 0 and hidden == 0, f"{page} without JavaScript: every row shows",
                f"{hidden} of {total} hidden")
        buttons = d.find_elements(By.CSS_SELECTOR, "button, select, input")
        shown_controls = [e.tag_name for e in buttons if e.is_displayed()]
        c.check(not shown_controls, f"{page} without JavaScript: no control that does nothing",
                shown_controls)
        heads = [th.text for th in d.find_elements(By.CSS_SELECTOR, f"#{table} thead th")]
        c.check(all(re.fullmatch(r"[A-Za-z ]+", h) for h in heads),
                f"{page} without JavaScript: headings are plain text", heads)
    finally:
        b.close()


def run_checks(args):
    c = Checks()
    b = Browser()
    try:
        check_fleet(c, b, args.fleet)
        check_drift(c, b, args.drift, args.old, args.new)
        for path, page in ((args.fleet, "fleet"), (args.drift, "drift")):
            open_page(b, path)
            b.driver.set_window_size(800, 1000)
            check_layout(c, b.driver, page, "screen")
            check_print(c, b.driver, page)
            c.check(not console_errors(b.driver), f"{page}: no console errors at 800 px",
                    console_errors(b.driver))
    finally:
        b.close()
    check_without_javascript(c, args.fleet, "fleet", "matrix")
    check_without_javascript(c, args.drift, "drift", "drift")
    if c.failures:
        print(f"\n{len(c.failures)} check(s) failed:", file=sys.stderr)
        for f in c.failures:
            print("  " + f, file=sys.stderr)
        return 1
    print("\nall browser checks passed")
    return 0


def screenshot(args):
    width, height = (int(x) for x in args.size.split(","))
    b = Browser(width=width, height=height)
    try:
        open_page(b, args.page)
        # Fonts and layout settle within a frame or two of load.
        time.sleep(0.5)
        b.driver.save_screenshot(args.out)
    finally:
        b.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check")
    chk.add_argument("--fleet", required=True)
    chk.add_argument("--drift", required=True)
    chk.add_argument("--old", required=True)
    chk.add_argument("--new", required=True)
    shot = sub.add_parser("screenshot")
    shot.add_argument("page")
    shot.add_argument("out")
    shot.add_argument("--size", default="1400,1000")
    args = p.parse_args()
    return run_checks(args) if args.cmd == "check" else screenshot(args)


if __name__ == "__main__":
    sys.exit(main())
