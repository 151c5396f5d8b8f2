"""``python -m mcp_trio.bench TARGET ...``: the same as ``mcp-trio bench``."""

import sys

from .cli import main

sys.exit(main())
