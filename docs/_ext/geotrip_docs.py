"""Build-time generators of the documentation site (a local Sphinx extension).

Everything that would otherwise be copied by hand is generated here, on every build, from
the code itself:

* ``docs/api/``: one page per public name of :mod:`geotrip._api` (the single API table),
  grouped by room, each resolved through the lazy top level ``geotrip.<name>``;
* ``docs/cli/``: one page per ``geotrip`` subcommand, from ``geotrip.cli.build_parser()``;
* ``docs/notebooks/``: the notebooks of ``notebooks/``, executed with their quick settings
  (``GEOTRIP_NOTEBOOK_QUICK=1``), each in its own process with its own time limit;
* ``docs/_generated/scale.md``: the README section "Running at scale" (or a link).

The page generators are pure Python (no Sphinx, no JAX): ``tests/test_docs.py`` calls them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent

#: Room (subpackage) -> section title of the API reference, in the order of the architecture.
ROOM_TITLES = {
    "core": "core: geometry, distances, losses, gradients, samplers, mining",
    "sweeps": "sweeps: closed-form kernel, sharded sweeps, margin matching",
    "counterexamples": "counterexamples: search, simplify, certify, verify",
    "train": "train: models, data, metrics, training runs, collapse",
    "analyze": "analyze: diagnosis of your own embeddings",
    "analysis": "analysis: diagnosis of your own embeddings",
    "": "shared helpers: provenance and caches",
}

#: Per-notebook wall-clock limit of its execution during the build, in seconds.
NOTEBOOK_TIMEOUTS = {
    "01_gradient_geometry.ipynb": 600,
    "02_sweeps_and_mining.ipynb": 600,
    "03_counterexamples.ipynb": 600,
    "04_collapse.ipynb": 600,
}
DEFAULT_NOTEBOOK_TIMEOUT = 600
#: Environment of the notebook kernels: the quick settings the notebook tests use.
NOTEBOOK_ENV = {"GEOTRIP_NOTEBOOK_QUICK": "1", "JAX_PLATFORMS": "cpu"}

TODO_FILE = DOCS / "api_todo.md"


# --------------------------------------------------------------------------- API pages


def api_table() -> dict[str, dict[str, tuple[str, ...]]]:
    """``geotrip._api.API``, loaded from its file (it imports nothing, so neither do we)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_geotrip_api", ROOT / "geotrip" / "_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.API


def excluded_names(path: Path = TODO_FILE) -> dict[str, str]:
    """Names excluded from the API reference: ``- `name` (owner): reason`` lines under the
    heading "Excluded ..." of ``docs/api_todo.md``, as ``{name: line}``."""
    return todo_names("excluded", path)


def todo_names(heading: str, path: Path = TODO_FILE) -> dict[str, str]:
    """``- `name` ...`` lines under the ``## `` headings of ``docs/api_todo.md`` that start
    with ``heading`` (case-insensitive), as ``{name: line}``."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        m = re.match(r"^- `([A-Za-z_][A-Za-z0-9_.]*)`", line)
        if m and section is not None and section.startswith(heading.lower()):
            out[m.group(1)] = line[2:].strip()
    return out


def room_names(api=None, excluded=None) -> dict[str, list[str]]:
    """``{room: [public names documented]}``, every room of the table in architecture order
    (rooms unknown to :data:`ROOM_TITLES` come last), names sorted, exclusions removed."""
    api = api_table() if api is None else api
    excluded = excluded_names() if excluded is None else excluded
    rooms = sorted(api, key=lambda r: (list(ROOM_TITLES).index(r) if r in ROOM_TITLES else 99, r))
    return {
        room: sorted(
            (n for names in api[room].values() for n in names if n not in excluded),
            key=lambda n: (n.upper() != n, n.lower()),
        )
        for room in rooms
    }


def _room_slug(room: str) -> str:
    return room or "helpers"


def page_slugs(names) -> dict[str, str]:
    """``{name: page/label slug}``: the name itself, unless it differs only by case from
    another public name (``Distance`` and ``distance``): file names and Sphinx labels are
    case-insensitive, so the capitalised one becomes ``distance-class`` (``-const`` for an
    all-caps constant)."""
    names = list(names)
    lower = [n.lower() for n in names]
    out = {}
    for n in names:
        if lower.count(n.lower()) > 1 and n != n.lower():
            out[n] = n.lower() + ("-const" if n.isupper() else "-class")
        else:
            out[n] = n
    return out


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _kind(name: str, obj) -> str:
    import inspect

    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


def api_page(
    name: str,
    kind: str,
    *,
    slug: str | None = None,
    data_doc: str | None = None,
    value: str | None = None,
):
    """The reST source of the page of ``geotrip.<name>`` (``kind``: function, class,
    exception or data; for data, its doc comment and a short ``repr``)."""
    slug = slug or name
    lines = [f".. _api-{slug}:", "", _title(f"``{name}``"), ".. currentmodule:: geotrip", ""]
    if kind == "function":
        lines.append(f".. autofunction:: {name}")
    elif kind in ("class", "exception"):
        lines += [f".. autoclass:: {name}", "   :members:", "   :show-inheritance:"]
    else:
        lines.append(f".. py:data:: {name}")
        if value is not None:
            lines.append(f"   :value: {value}")
        lines.append("")
        if data_doc:
            lines += ["   " + ln if ln.strip() else "" for ln in data_doc.splitlines()]
        else:
            lines += [
                "   .. admonition:: TODO",
                "",
                "      This constant has no doc comment (``#:`` above its assignment) yet: see",
                "      :doc:`/api_todo`. Its value is shown above.",
            ]
    return "\n".join(lines) + "\n"


def room_page(room: str, names: list[str], kinds: dict[str, str], slugs: dict[str, str]) -> str:
    """The reST index of one room: a table of its names and a toctree of their pages."""
    title = ROOM_TITLES.get(room, room)
    pkg = f"geotrip.{room}" if room else "geotrip"
    lines = [
        f".. _api-room-{_room_slug(room)}:",
        "",
        _title(title),
        f"Re-exported by ``{pkg}`` and at the top level (``import geotrip as gt``; ``gt.<name>``).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 15",
        "",
        "   * - name",
        "     - kind",
    ]
    for n in names:
        lines += [f"   * - :ref:`{n} <api-{slugs[n]}>`", f"     - {kinds.get(n, '')}"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {_room_slug(room)}/{slugs[n]}" for n in names]
    return "\n".join(lines) + "\n"


def api_index(rooms: dict[str, list[str]], excluded: dict[str, str]) -> str:
    lines = [
        _title("API reference"),
        "Generated at build time from the public-API table ``geotrip/_api.py``: every public "
        "name has a page, made from its docstring and resolved through the lazy top level "
        "``geotrip.<name>``. A name added to the table gets its page on the next build.",
        "",
    ]
    if excluded:
        lines += [
            ".. admonition:: TODO",
            "",
            f"   {len(excluded)} public name(s) are excluded because their docstrings break "
            "the build: see :doc:`/api_todo`.",
            "",
        ]
    lines += [".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   {_room_slug(r)}" for r, names in rooms.items() if names]
    lines += ["   modules"]
    return "\n".join(lines) + "\n"


THIN_LAYERS = ("geotrip.figures", "geotrip.cli", "geotrip.benchmarks")


def api_modules(api) -> list[str]:
    """The modules whose docstrings the "Modules" page shows, in architecture order:
    ``geotrip``, each room's package and the modules that define its public names, the thin
    layers, and any other ``geotrip`` module that a docstring names with ``:mod:``."""
    import importlib.util

    out = ["geotrip", "geotrip._api"]
    for room, modules in api.items():
        if room:
            out.append(f"geotrip.{room}")
        out += [f"geotrip.{room}.{m}" if room else f"geotrip.{m}" for m in modules]
    out += THIN_LAYERS
    pattern = re.compile(r":mod:`~?(geotrip(?:\.\w+)*)`")
    for f in sorted((ROOT / "geotrip").rglob("*.py")):
        for mod in pattern.findall(f.read_text(encoding="utf-8")):
            try:
                if importlib.util.find_spec(mod) is not None:
                    out.append(mod)
            except ImportError:
                pass
    return list(dict.fromkeys(out))


def module_label(mod: str) -> str:
    return "mod-" + mod.replace(".", "-").replace("_", "")


def modules_page(api, excluded=None) -> str:
    """One section per module of :func:`api_modules` with its docstring (the design notes
    and proofs live there), so that ``:mod:`` references in docstrings resolve. A module
    whose dotted name is also a public name (``geotrip.search``, the package, and
    ``geotrip.search``, the function) is shown with ``:no-index:``; references to it are
    resolved by :func:`_on_missing_reference`."""
    excluded = todo_names("modules excluded") if excluded is None else excluded
    public = {n for modules in api.values() for names in modules.values() for n in names}
    lines = [
        _title("Modules"),
        "The docstrings of the packages and of the modules that define the public names "
        "(design notes, conventions, proofs). The public names themselves are documented "
        "under their top-level name ``geotrip.<name>``.",
        "",
    ]
    for mod in api_modules(api):
        lines += [f".. _{module_label(mod)}:", "", _title(f"``{mod}``", "-")]
        if mod in excluded:  # a target for :mod: references, and the reason, not the text
            lines += [f".. py:module:: {mod}"]
        else:
            lines += [f".. automodule:: {mod}"]
        if mod.startswith("geotrip.") and mod.split(".")[1] in public:
            lines += ["   :no-index:"]
        lines += [""]
        if mod in excluded:
            lines += [
                ".. admonition:: TODO",
                "",
                "   This module's docstring breaks the build and is not shown: see "
                ":doc:`/api_todo`.",
                "",
            ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Write only when the content changes (Sphinx then rebuilds only what changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate_api_pages(
    outdir: Path, *, resolve: bool = True, log=print, warn=print
) -> dict[str, list[str]]:
    """Write ``outdir/index.rst``, one page per room and one per public name.

    With ``resolve`` (the build), each name is fetched as ``geotrip.<name>`` to choose its
    directive and, for constants, to find its ``#:`` doc comment; without it (the fast
    test), every name is written as a function page and nothing is imported.
    Returns ``{room: [names]}``.
    """
    api = api_table()
    excluded = excluded_names()
    rooms = room_names(api, excluded)
    slugs = page_slugs(n for names in rooms.values() for n in names)
    kinds: dict[str, str] = {}
    if outdir.exists():
        shutil.rmtree(outdir)
    undocumented = []
    for room, names in rooms.items():
        for name in names:
            data_doc = value = None
            kind = "function"
            if resolve:
                import inspect

                import geotrip

                obj = getattr(geotrip, name)
                kind = _kind(name, obj)
                if kind != "data" and not inspect.getdoc(obj):
                    undocumented.append(name)
                if kind == "data":
                    data_doc = _data_doc(name, _defining_module(api, name))
                    text = repr(obj)
                    value = text if len(text) <= 120 else None
                    if not data_doc:
                        undocumented.append(name)
            kinds[name] = kind
            page = api_page(name, kind, slug=slugs[name], data_doc=data_doc, value=value)
            _write(outdir / _room_slug(room) / f"{slugs[name]}.rst", page)
        _write(outdir / f"{_room_slug(room)}.rst", room_page(room, names, kinds, slugs))
    _write(outdir / "modules.rst", modules_page(api))
    _write(outdir / "index.rst", api_index(rooms, excluded))
    known = todo_names("undocumented")
    for name in undocumented:
        if name not in known:
            warn(
                f"public name {name!r} has no docstring (a constant needs a '#:' comment above "
                "its assignment); document it, or list it in docs/api_todo.md"
            )
    for name in sorted((set(known) - set(undocumented)) & set(slugs)):
        log(f"geotrip-docs: {name} is listed as undocumented in api_todo.md but is documented")
    return rooms


def _defining_module(api, name: str) -> str:
    for room, modules in api.items():
        for mod, names in modules.items():
            if name in names:
                return f"geotrip.{room}.{mod}" if room else f"geotrip.{mod}"
    raise KeyError(name)


def _data_doc(name: str, module: str) -> str | None:
    """The ``#:`` comment (or string literal after it) documenting a module constant."""
    from sphinx.pycode import ModuleAnalyzer

    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    text = "\n".join(docs.get(("", name), [])).strip()
    return text or None


# --------------------------------------------------------------------------- CLI pages


def cli_commands() -> list[tuple[str, str]]:
    """``[(subcommand, one-line help)]`` from ``geotrip.cli.build_parser()``."""
    import argparse

    from geotrip.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, "")) for name in action.choices]
    return []


def _plain(text):
    """Help text is plain text (what ``--help`` prints), not reST: escape the characters
    reST would read as markup (``|x|`` substitutions, ``*emphasis*``, ```roles```,
    ``name_`` references)."""
    if not isinstance(text, str) or text == "==SUPPRESS==":
        return text
    return re.sub(r"([\\`*|_])", r"\\\1", text)


def docs_parser():
    """``geotrip.cli.build_parser()`` with every description and help escaped for reST
    (:func:`_plain`): the parser the CLI pages are generated from."""
    import argparse

    from geotrip.cli import build_parser

    def escape(parser):
        parser.description = _plain(parser.description)
        parser.epilog = _plain(parser.epilog)
        for action in parser._actions:
            action.help = _plain(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    choice.help = _plain(choice.help)
                for sub in action.choices.values():
                    escape(sub)
        return parser

    return escape(build_parser())


def generate_cli_pages(outdir: Path) -> list[str]:
    """One page per subcommand (``.. argparse::`` of sphinx-argparse) and an index."""
    if outdir.exists():
        shutil.rmtree(outdir)
    commands = cli_commands()
    index = [
        _title("Command line"),
        "Generated at build time from the argparse definitions (``geotrip.cli.build_parser()``; "
        "help texts shown as plain text, as ``--help`` prints them): "
        "one page per subcommand, with exactly the options and help that ``geotrip COMMAND "
        "--help`` prints.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - command",
        "     - what it does",
    ]
    for name, help_ in commands:
        index += [f"   * - :doc:`geotrip {name} <{name}>`", f"     - {_rst_text(help_)}"]
        page = [
            f".. _cli-{name}:",
            "",
            _title(f"``geotrip {name}``"),
            ".. argparse::",
            "   :module: geotrip_docs",
            "   :func: docs_parser",
            "   :prog: geotrip",
            f"   :path: {name}",
            "",
        ]
        _write(outdir / f"{name}.rst", "\n".join(page))
    index += ["", ".. toctree::", "   :hidden:", ""] + [f"   {n}" for n, _ in commands]
    _write(outdir / "index.rst", "\n".join(index) + "\n")
    return [n for n, _ in commands]


def _rst_text(text: str) -> str:
    return re.sub(r"([*`|_\\])", r"\\\1", " ".join(text.split()))


# --------------------------------------------------------------------------- README section


def readme_section(title: str, readme: Path = ROOT / "README.md") -> str | None:
    """The body of the README's ``## title`` section (up to the next ``## ``), or None."""
    if not readme.exists():
        return None
    lines = readme.read_text(encoding="utf-8").splitlines()
    body, inside, fence = [], False, False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            if inside:
                break
            inside = line[3:].strip().lower() == title.lower()
            continue
        if inside:
            body.append(line)
    return "\n".join(body).strip() + "\n" if inside or body else None


def generate_scale_section(path: Path) -> bool:
    """Write the README's "Running at scale" section (headings demoted) or a pointer."""
    body = readme_section("Running at scale")
    if body:
        body = re.sub(r"^(#{3,5}) ", r"#\1 ", body, flags=re.M)
        text = "*From the README (included at build time):*\n\n" + body
    else:
        text = (
            '*The README has no section "Running at scale" yet; the instructions for GPUs, TPU '
            "slices and several hosts are in its section on sweeps:* "
            "[README: Sweeps, mining and margin matching]"
            "(readme.md#sweeps-mining-and-margin-matching).\n"
        )
    _write(path, text)
    return bool(body)


# --------------------------------------------------------------------------- notebooks


def _source_hash(notebook: Path) -> str:
    """Hash of what an executed notebook depends on: itself, the package, results/."""
    h = hashlib.sha256(notebook.read_bytes())
    for folder, pattern in ((ROOT / "geotrip", "*.py"), (ROOT / "results", "*")):
        for f in sorted(folder.rglob(pattern)):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    h.update(json.dumps(NOTEBOOK_ENV, sort_keys=True).encode())
    return h.hexdigest()


def execute_notebook(src: str, dst: str, cell_timeout: int) -> int:
    """Run in a child process: execute ``src`` (cwd: its folder) and write it to ``dst``,
    partially executed if a cell fails. Returns 0, or 1 after printing the error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(src).parent)}},
    )
    status = 0
    try:
        client.execute()
    except CellExecutionError as exc:
        print(str(exc)[-3000:], file=sys.stderr)
        status = 1
    nbformat.write(nb, dst)
    return status


def execute_notebooks(outdir: Path, *, jobs: int = 1, log=print, warn=print) -> float:
    """Execute every ``notebooks/*.ipynb`` into ``outdir`` (skipping those whose sources are
    unchanged since their last execution); each notebook runs in a child process killed
    after its time limit (:data:`NOTEBOOK_TIMEOUTS`). A failed cell or a timeout is
    reported with ``warn`` (an error under ``-W``). Returns the wall time spent."""
    from concurrent.futures import ThreadPoolExecutor

    outdir.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for stale in outdir.glob("*.ipynb"):
        if not (ROOT / "notebooks" / stale.name).exists():
            stale.unlink()
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline figures
    env.update(NOTEBOOK_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(DOCS / "_ext"), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()

    def run(nb: Path) -> None:
        dst = outdir / nb.name
        stamp = outdir / (nb.name + ".sha256")
        digest = _source_hash(nb)
        if dst.exists() and stamp.exists() and stamp.read_text() == digest:
            log(f"geotrip-docs: {nb.name}: unchanged, not re-executed")
            return
        stamp.unlink(missing_ok=True)
        limit = NOTEBOOK_TIMEOUTS.get(nb.name, DEFAULT_NOTEBOOK_TIMEOUT)
        code = (
            "import sys, geotrip_docs; "
            f"sys.exit(geotrip_docs.execute_notebook({str(nb)!r}, {str(dst)!r}, {limit}))"
        )
        t = time.perf_counter()
        try:
            r = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=nb.parent,
                timeout=limit,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            warn(f"notebook {nb.name}: execution exceeded its limit of {limit} s")
            if not dst.exists():
                shutil.copy(nb, dst)
            return
        if r.returncode != 0:
            error = re.sub(r"\x1b\[[0-9;]*m", "", r.stderr)[-3000:]  # no terminal colours
            warn(f"notebook {nb.name}: execution failed:\n{error}")
            if not dst.exists():
                shutil.copy(nb, dst)
            return
        stamp.write_text(digest)
        log(f"geotrip-docs: executed {nb.name} in {time.perf_counter() - t:.0f} s")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(run, notebooks))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- Sphinx hooks


def _on_builder_inited(app) -> None:
    from sphinx.util import logging

    logger = logging.getLogger("geotrip_docs")
    warn = lambda msg: logger.warning(msg, type="geotrip_docs")
    info = lambda msg: logger.info(msg)
    generate_api_pages(DOCS / "api", log=info, warn=warn)
    generate_cli_pages(DOCS / "cli")
    generate_scale_section(DOCS / "_generated" / "scale.md")
    if os.environ.get("GEOTRIP_DOCS_EXECUTE", "1") == "0":
        warn("GEOTRIP_DOCS_EXECUTE=0: notebooks are NOT executed (their figures are missing)")
        out = DOCS / "notebooks"
        out.mkdir(exist_ok=True)
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
            if not (out / nb.name).exists():
                shutil.copy(nb, out / nb.name)
        return
    jobs = int(os.environ.get("GEOTRIP_DOCS_JOBS", "1"))
    seconds = execute_notebooks(DOCS / "notebooks", jobs=jobs, log=info, warn=warn)
    logger.info(f"geotrip-docs: notebooks done in {seconds:.0f} s")


def _on_missing_reference(app, env, node, contnode):
    """Resolve Python references the domain could not: a public name referenced from any
    module (``:func:`mine_triplets``` in ``geotrip.core._mining``, or by a private dotted
    path) is the page of ``geotrip.<name>``; a module shown with ``:no-index:`` is its
    section of the Modules page. Anything else stays unresolved (an error under ``-W``)."""
    if node.get("refdomain") != "py":
        return None
    from sphinx.util.nodes import make_refnode

    target = node.get("reftarget", "")
    if node.get("reftype") == "mod":
        label = env.get_domain("std").labels.get(module_label(target))
        if label is None:
            return None
        docname, labelid, _ = label
        return make_refnode(app.builder, node["refdoc"], docname, labelid, contnode, target)
    public = _public_names()
    name = target.rpartition(".")[2]
    if name in public and (target == name or target.startswith("geotrip.")):
        if target == f"geotrip.{name}":
            return None  # already the documented name: genuinely missing
        return env.get_domain("py").resolve_xref(
            env, node["refdoc"], app.builder, "obj", f"geotrip.{name}", node, contnode
        )
    return None


_PUBLIC: set[str] = set()


def _public_names() -> set[str]:
    if not _PUBLIC:
        _PUBLIC.update(n for mods in api_table().values() for ns in mods.values() for n in ns)
    return _PUBLIC


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    app.connect("missing-reference", _on_missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
