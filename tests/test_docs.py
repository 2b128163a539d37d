"""The documentation site (docs/): its configuration, its full build, and the built pages
seen by a real browser.

* default (fast, pure Python, no Sphinx, no JAX): every public name of ``geotrip/_api.py``
  gets a page in the generated API reference (or is listed on the TODO page), and every link
  of the hand-written pages into the README points to a heading that exists;
* ``slow``: the full build, warnings as errors, notebooks executed;
* browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
  selenium) opens the built index and an API page: the math is typeset by MathJax and every
  figure loaded. Skipped, saying why, without Chromium or without a built site.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SITE = Path(os.environ.get("GEOTRIP_DOCS_HTML", DOCS / "_build" / "html"))
BUILD_COMMAND = "python -m sphinx -W --keep-going -b html docs docs/_build/html"


def _docs_ext():
    spec = importlib.util.spec_from_file_location("geotrip_docs", DOCS / "_ext" / "geotrip_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_an_api_page(tmp_path):
    from geotrip._api import API, locations

    ext = _docs_ext()
    excluded = ext.excluded_names()
    rooms = ext.generate_api_pages(tmp_path, resolve=False, log=lambda m: None)
    public = set(locations())
    documented = [n for names in rooms.values() for n in names]
    assert len(documented) == len(set(documented))
    assert set(documented) | set(excluded) == public, "names neither documented nor listed"
    assert set(rooms) == set(API), "every room of the table has a section"
    slugs = ext.page_slugs(documented)
    assert len({s.lower() for s in slugs.values()}) == len(slugs), "page names clash by case"
    index = (tmp_path / "index.rst").read_text()
    for room, names in rooms.items():
        room_slug = room or "helpers"
        if names:
            assert f"   {room_slug}\n" in index
        room_page = (tmp_path / f"{room_slug}.rst").read_text()
        for name in names:
            page = (tmp_path / room_slug / f"{slugs[name]}.rst").read_text()
            assert ".. currentmodule:: geotrip" in page
            assert f":: {name}\n" in page, name  # the directive documents geotrip.<name>
            assert f"   {room_slug}/{slugs[name]}\n" in room_page, name
    todo = (DOCS / "api_todo.md").read_text()
    for name, line in excluded.items():
        assert re.search(r"\(\w[^)]*\)", line), f"{name}: the TODO line names no owner"
        assert f"`{name}`" in todo


def test_page_slugs_separate_names_that_differ_by_case():
    ext = _docs_ext()
    assert ext.page_slugs(["Distance", "distance", "angle"]) == {
        "Distance": "distance-class",
        "distance": "distance",
        "angle": "angle",
    }


def test_todo_file_sections_are_parsed(tmp_path):
    ext = _docs_ext()
    f = tmp_path / "todo.md"
    f.write_text(
        "# t\n\n- `ignored` (x): before any section\n## Excluded (breaks)\n\n"
        "- `angle` (core): bad\n## Modules excluded\n- `geotrip.core._x` (core): bad\n"
        "## Undocumented\n- `FOO` (core)\n"
    )
    assert list(ext.excluded_names(f)) == ["angle"]
    assert list(ext.todo_names("modules excluded", f)) == ["geotrip.core._x"]
    assert list(ext.todo_names("undocumented", f)) == ["FOO"]


def test_every_cli_subcommand_has_a_page(tmp_path):
    from geotrip.cli import _COMMAND_MODULES

    ext = _docs_ext()
    names = ext.generate_cli_pages(tmp_path)
    assert names == [m.rpartition("._")[2] for m in _COMMAND_MODULES]
    index = (tmp_path / "index.rst").read_text()
    for name in names:
        page = (tmp_path / f"{name}.rst").read_text()
        assert f"   :path: {name}\n" in page and ":func: docs_parser" in page
        assert f"<{name}>`" in index and f"   {name}\n" in index


def _slug(title: str) -> str:
    """myst-parser's default heading slug (``myst_heading_anchors``)."""
    title = re.sub(r"`([^`]*)`", r"\1", title)
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_readme_links_point_to_existing_headings():
    """The findings pages link to README sections for the numbers: a renamed README heading
    must be caught here, not only by the (slow) build."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    fence, slugs = False, set()
    for line in readme.splitlines():
        if line.startswith("```"):
            fence = not fence
        m = re.match(r"^(#{1,2}) (.+)$", line)  # H1, H2: H2, H3 once included (offset 1)
        if m and not fence:
            slugs.add(_slug(m.group(2)))
    links = []
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        links += [(page.name, s) for s in re.findall(r"readme\.md#([\w-]+)", page.read_text())]
    assert links, "the findings pages link to README sections"
    missing = [(page, s) for page, s in links if s not in slugs]
    assert not missing, f"links to README headings that do not exist: {missing}"


def test_readme_section_extraction(tmp_path):
    ext = _docs_ext()
    f = tmp_path / "README.md"
    f.write_text("# T\n\n## A\n\na\n```\n## not a heading\n```\n\n## Running at scale\n\nbody\n")
    assert ext.readme_section("Running at scale", f) == "body\n"
    assert ext.readme_section("A", f) == "a\n```\n## not a heading\n```\n"
    assert ext.readme_section("Missing", f) is None


def test_cli_help_is_shown_as_plain_text():
    """CLI help is plain text: reST markup characters in it must come out as typed."""
    docutils_core = pytest.importorskip(
        "docutils.core", reason="docutils comes with the docs extra"
    )
    ext = _docs_ext()
    text = "least |hinge argument| of `radius`, theta_ap *or* psi_ (default: 1e-3) \\ end"
    tree = docutils_core.publish_doctree(
        ext._plain(text), settings_overrides={"report_level": 5, "halt_level": 5}
    )
    assert tree.astext() == text
    assert ext._plain("==SUPPRESS==") == "==SUPPRESS==" and ext._plain(None) is None


# --------------------------------------------------------------------------- full build


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip(
        "sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'"
    )
    out = tmp_path / "html"
    r = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), "docs", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stderr[-5000:]
    assert (out / "index.html").exists()
    assert (out / "api" / "core" / "triplet_loss.html").exists()
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = (out / "notebooks" / f"{nb.stem}.html").read_text()
        assert "<img" in html, f"{nb.name}: no figure in the rendered notebook"


# --------------------------------------------------------------------------- browser

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _browser_or_skip(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(
            "headless browser test skipped: Chromium and ChromeDriver not found "
            "(Debian: apt-get install -y chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="browser test skipped: selenium is not installed"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def site_url():
    if not (SITE / "index.html").exists():
        pytest.skip(f"browser test skipped: no built site at {SITE} (build it: {BUILD_COMMAND})")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


_PAGE_STATE = """
const imgs = Array.from(document.querySelectorAll('article img'));
return {
  mathjax: typeof MathJax !== 'undefined' && !!MathJax.startup,
  typeset: document.querySelectorAll('mjx-container').length,
  errors: document.querySelectorAll('mjx-merror').length,
  raw_math: Array.from(document.querySelectorAll('.math'))
      .filter(e => !e.querySelector('mjx-container')).length,
  images: imgs.length,
  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
};
"""


def _page_state(driver, url, *, timeout=60.0):
    """Open ``url`` and wait until MathJax has typeset it and its images have loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: (
                d.execute_script(_PAGE_STATE)["raw_math"] == 0
                and not d.execute_script(_PAGE_STATE)["broken"]
            )
        )
    except Exception:  # report the state below rather than a bare timeout
        pass
    return driver.execute_script(_PAGE_STATE)


def test_built_site_renders_math_and_figures_in_chromium(site_url, tmp_path):
    driver = _browser_or_skip(tmp_path)
    try:
        index = _page_state(driver, f"{site_url}/index.html")
        api = _page_state(driver, f"{site_url}/api/core/gradient_angles.html")
        findings = _page_state(driver, f"{site_url}/findings/weighting-vs-active-sets.html")
    finally:
        driver.quit()
    for name, state in (("index", index), ("API page", api), ("findings page", findings)):
        assert state["mathjax"], f"{name}: MathJax did not load: {state}"
        assert state["typeset"] > 0, f"{name}: no typeset math: {state}"
        assert state["errors"] == 0 and state["raw_math"] == 0, f"{name}: {state}"
        assert not state["broken"], f"{name}: figures that did not load: {state['broken']}"
    assert index["images"] >= 1 and findings["images"] >= 2, (index, findings)
