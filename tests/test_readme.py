"""The README's Python examples are tests.

Every fenced block that opens with a line ```` ```python ```` is extracted, in order, and
the blocks run one after the other in ONE fresh interpreter (a subprocess with JAX's
defaults: float32, standard dtype promotion, no x64; what a new user gets), sharing one
namespace, so a later block may use the imports of an earlier one.

A block is skipped only when it is marked *illustrative*: the last non-blank line before
its opening fence is an HTML comment ``<!-- illustrative: ... -->`` that states why and
its runtime, e.g. ``<!-- illustrative: runtime about 5 minutes on 2 CPU cores -->``
(invisible on the rendered page). Use it for examples too expensive for the test suite,
never to hide a failing one.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*illustrative:(.*?)-->", re.S)


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line number, code, illustrative reason or None)`` for each python block."""
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        last = before[-1].strip() if before else ""
        marker = _MARKER.fullmatch(last)
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, m.group(1), marker.group(1).strip() if marker else None))
    return out


def test_block_extraction_and_marker():
    text = (
        "x\n```python\na = 1\n```\n\n<!-- illustrative: runtime 5 min -->\n"
        "```python\nslow()\n```\n```bash\nls\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b[1], b[2]) for b in blocks] == [("a = 1\n", None), ("slow()\n", "runtime 5 min")]


def test_illustrative_blocks_state_their_runtime():
    for line, _, reason in readme_blocks(README.read_text()):
        if reason is not None:
            assert "runtime" in reason, f"README.md:{line}: illustrative marker without runtime"


def test_readme_python_blocks_run():
    blocks = [
        (line, code) for line, code, reason in readme_blocks(README.read_text()) if not reason
    ]
    assert blocks, "no runnable python block found in README.md"
    script = "".join(
        f"print('--- README.md:{line}', flush=True)\n"
        f"exec(compile({code!r}, 'README.md:{line}', 'exec'), NS)\n"
        for line, code in blocks
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, "-c", "NS = {'__name__': '__readme__'}\n" + script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, (
        f"a README example failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    )
