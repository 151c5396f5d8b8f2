"""The command line's parser: argparse, with errors a person can act on.

argparse answers a typo with the whole usage block and ``unrecognized arguments: --trasnport``,
named by the top-level command even when the option belongs to ``serve``. ``UsageParser``
answers in one line, names the subcommand, suggests the closest option it knows, and points
at ``--help``; exit status 2, as argparse's. Flag values that are sizes read as people write
them (``4MiB``), and ``--help`` shows them that way.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?\s*", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1024, "m": 1024**2, "mib": 1024**2, "mb": 1024**2,
            "g": 1024**3, "gib": 1024**3, "gb": 1024**3}


def size_text(value: float) -> str:
    """``4194304`` -> ``4 MiB``; exact multiples of KiB/MiB/GiB get their unit, others bytes."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{int(value // factor):,} {unit}"
    return f"{int(value):,} B" if float(value).is_integer() else f"{value:g} B"


def parse_size(text: str) -> int:
    """``4194304``, ``4MiB``, ``512 KiB``, ``1G`` -> bytes (binary units: K = KiB)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB, 512KiB, 1048576)")
    value = float(match.group(1)) * _FACTORS[(match.group(2) or "").lower()]
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of bytes, at least 1 (got {text!r})")
    return int(value)


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number (got {text!r})") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535 (got {value})")
    return value


class UsageParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line with a did-you-mean (see the module)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._subcommand(parsed) or self
            parser.error(parser.unknown(extras))
        return parsed

    def _subcommand(self, parsed: argparse.Namespace) -> UsageParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                return chosen if isinstance(chosen, UsageParser) else None
        return None

    def unknown(self, extras: list[str]) -> str:
        """``unknown option --trasnport (did you mean --transport?)`` for each stray word."""
        import difflib  # only errors pay for it

        known = [option for action in self._actions for option in action.option_strings
                 if action.help is not argparse.SUPPRESS]
        words = []
        for extra in extras:
            if not extra.startswith("-"):
                words.append(f"unexpected argument {extra!r}")
                continue
            option = extra.partition("=")[0]
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
            words.append(f"unknown option {option}" + (f" (did you mean {close[0]}?)" if close else ""))
        return "; ".join(words)
