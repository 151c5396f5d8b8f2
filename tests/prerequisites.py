"""What ``make test`` needs besides ``.venv``, checked before two minutes of tests are spent.

The whole suite includes the official MCP conformance suite (``test_conformance.py``), run by
``shared/conformance/run.sh`` from the project's ``shared/`` folder, which must sit beside this
clone; on first use that script installs Node 22 and the suite from the npm registry, so it
needs ``npm`` until they are cached. Run as a script (``make test`` does): one line per thing
missing, with where it was looked for and what to do, and exit status 2; nothing when all is
there.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The conformance runner (``test_conformance`` imports it from here).
RUN_SH = REPO.parent / "shared" / "conformance" / "run.sh"


def conformance_cache() -> Path:
    """Where ``run.sh`` keeps Node 22 and the suite (its own default, same variables)."""
    if os.environ.get("MCP_CONFORMANCE_CACHE"):
        return Path(os.environ["MCP_CONFORMANCE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-conformance"


def missing() -> list[str]:
    """One sentence per prerequisite that is not there."""
    problems = []
    if not RUN_SH.is_file():
        problems.append(f"the conformance runner {RUN_SH} is missing: the project's shared/ folder must sit "
                        f"beside this clone (as {REPO.parent / 'shared'})")
    if shutil.which("bash") is None:
        problems.append("bash is not on PATH: the conformance runner is a bash script")
    node = conformance_cache() / "node22" / "node_modules" / ".bin" / "node"
    if not node.exists() and shutil.which("npm") is None:
        problems.append(f"npm is not on PATH: the first run installs Node 22 and the MCP conformance suite with it "
                        f"(into {conformance_cache()}): install Node.js and npm (Debian: apt-get install npm)")
    return problems


def main() -> int:
    problems = missing()
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
