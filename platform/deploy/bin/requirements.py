#!/usr/bin/env python
"""Print the project's dependencies plus those of the named extras, one requirement a line.

    requirements.py pyproject.toml s3,prod > requirements.txt

The images install these before copying the code, so a code change does not reinstall torch;
they are read from the same table `pip install .[s3,prod]` reads. An unknown extra is an error,
not an empty list. Standard library only. Not a module of the application: nothing imports it.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
    lines = list(project["dependencies"])
    for extra in extras:
        lines += optional[extra]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: requirements.py PYPROJECT EXTRA[,EXTRA...]", file=sys.stderr)
        return 2
    extras = [extra.strip() for extra in argv[1].split(",") if extra.strip()]
    print("\n".join(requirements(argv[0], extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
