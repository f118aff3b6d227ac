"""Which optional extra a command needs, and a one-line answer when it is not installed.

``pip install remotehands`` gives the CLI and the SDK; the agent, the virtual desktop and the
fleet server need the ``agent`` and ``server`` extras (``all`` is both). A command that needs an
extra calls :func:`require_extras` first, so a missing extra is one line naming the ``pip
install`` to run and exit code 2, never an ImportError traceback from deep inside.

The distributions an extra needs are read from remotehands' own installed metadata (the
``Requires-Dist`` lines of pyproject.toml), so this table and pyproject.toml cannot drift apart.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys

import click

__all__ = ["EXIT_MISSING_EXTRA", "missing_distributions", "require_extras"]

EXIT_MISSING_EXTRA = 2
"""The exit code of a command whose extra is not installed (a configuration problem)."""

# "name[extras] >=1.0 ; extra == 'agent'": the distribution name and the extra it belongs to.
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([A-Za-z0-9._-]+)["']""")


def missing_distributions(extra: str) -> list[str]:
    """The distributions ``extra`` lists that are not installed (empty when it is complete,
    or when remotehands itself runs without installed metadata, e.g. from a source tree)."""
    try:
        requirements = importlib.metadata.requires("remotehands") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing: list[str] = []
    for requirement in requirements:
        marker = _EXTRA.search(requirement)
        name = _NAME.match(requirement)
        if marker is None or marker.group(1) != extra or name is None:
            continue
        if name.group(1) == "remotehands":  # "all" names the other extras
            continue
        try:
            importlib.metadata.distribution(name.group(1))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(1))
    return missing


def require_extras(command: str, *extras: str) -> None:
    """Exit with one line and code 2 when an extra ``command`` needs is not installed."""
    lacking = [extra for extra in extras if missing_distributions(extra)]
    if not lacking:
        return
    names = sorted({name for extra in lacking for name in missing_distributions(extra)})
    wanted = "all" if len(extras) > 1 else extras[0]
    click.echo(
        f"error: `remotehands {command}` needs the {wanted} extra (missing {', '.join(names)}): "
        f"pip install 'remotehands[{wanted}]'",
        err=True,
    )
    sys.exit(EXIT_MISSING_EXTRA)
