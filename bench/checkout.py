"""Which checkout's `gateway` the in-process harnesses import: `--root DIR` on their command line, else this one.

Imported first by bench/inproc.py and bench/inproc_dialogues.py, before anything that imports `gateway`
(bench/driver.py does): once a module is imported, putting another directory first on sys.path changes
nothing, and `--root` would measure this checkout under the other one's name.
"""

from __future__ import annotations

import os
import sys

THIS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def root_from_argv(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--root" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1])
        if arg.startswith("--root="):
            return os.path.abspath(arg.split("=", 1)[1])
    return THIS


ROOT = root_from_argv(sys.argv)
if "gateway" in sys.modules and not sys.modules["gateway"].__file__.startswith(ROOT + os.sep):
    raise SystemExit(f"bench/checkout.py: gateway was imported from {sys.modules['gateway'].__file__} before --root {ROOT}")
sys.path.insert(0, ROOT)
