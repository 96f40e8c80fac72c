"""Typed environment readers that fail loudly on bad values.

Settings read the environment only through these, so a typo such as ``DJANGO_DEBUG=ture`` stops
the process at start instead of silently meaning something else.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any


class EnvError(ValueError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_local_env(base_dir: Path) -> list[str]:
    """Load a local checkout's settings file, before any setting is read: REELCAST_ENV_FILE
    (which must exist), else ``local.env`` in REELCAST_VAR_DIR (default ``<checkout>/var``),
    where `make run` writes a generated DJANGO_SECRET_KEY and DJANGO_DEBUG=true once.
    Production has no such file and sets its environment itself."""
    named = os.environ.get("REELCAST_ENV_FILE")
    if named:
        return load_env_file(Path(named), required=True)
    var_dir = Path(os.environ.get("REELCAST_VAR_DIR") or base_dir / "var")
    return load_env_file(var_dir / "local.env")


def load_env_file(path: Path, *, required: bool = False) -> list[str]:
    """Put the ``KEY=VALUE`` lines of ``path`` into the environment; returns the names set.

    A variable already in the environment wins, so a deployment's own settings are never
    overridden by a file. Blank lines and ``#`` comments are skipped, ``export`` is allowed, and
    a value may be wrapped in one pair of single or double quotes (taken literally: no escapes,
    no ``$`` expansion). A missing file sets nothing (production has none) unless ``required``;
    a malformed line stops the process, naming the file and the line.
    """
    if not path.exists():
        if required:
            raise EnvError(f"REELCAST_ENV_FILE names {path}, which does not exist")
        return []
    loaded = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, equals, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not _ENV_NAME.fullmatch(name):
            raise EnvError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(f"{name} must be one of {sorted(_TRUE | _FALSE - {''})}, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise EnvError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise EnvError(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EnvError(f"{name} must be JSON: {exc}") from None


def env_choice(name: str, default: str, choices: set[str] | frozenset[str]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise EnvError(f"{name} must be one of {sorted(choices)}, got {raw!r}")
    return value


_RATE_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def parse_rate(name: str, raw: str | None) -> str | None:
    """``"120/min"`` as DRF writes rates; ``None``, ``""`` or ``"off"`` mean no limit."""
    if raw is None or raw.strip().lower() in {"", "off", "none"}:
        return None
    count, _, period = raw.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _RATE_PERIODS:
        raise EnvError(
            f"{name} must look like '120/min' (a positive count per s, min, hour or day), "
            f"or 'off'; got {raw!r}"
        )
    return f"{int(count)}/{period}"


def env_rate(name: str, default: str | None) -> str | None:
    raw = os.environ.get(name)
    return parse_rate(name, default if raw is None else raw)


def parse_csp(name: str, value: str | dict) -> dict[str, list[str]]:
    """A Content-Security-Policy as ``{directive: [sources]}``.

    Takes a policy string (``"default-src 'self'; img-src 'self' data:"``) or a mapping whose
    values are a list of sources or one space-separated string (``[]`` or ``""``: a directive
    without sources, such as ``upgrade-insecure-requests``). Directive names and sources are
    checked, so a typo or an injected ``;`` fails at start.
    """
    if isinstance(value, str):
        items: list[tuple[object, object]] = []
        for part in value.split(";"):
            directive, _, sources = part.strip().partition(" ")
            if directive:
                items.append((directive, sources))
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise EnvError(f"{name} must be a policy string or a JSON object, got {value!r}")
    policy: dict[str, list[str]] = {}
    for directive, sources in items:
        key = str(directive).strip().lower()
        if not key or not all(c.isalpha() or c == "-" for c in key):
            raise EnvError(f"{name}: {directive!r} is not a CSP directive name")
        if isinstance(sources, str):
            listed = sources.split()
        elif isinstance(sources, list | tuple) and all(isinstance(s, str) for s in sources):
            listed = [s.strip() for s in sources if s.strip()]
        else:
            raise EnvError(f"{name}: the sources of {key} must be a string or a list of strings")
        if any(c in s for s in listed for c in ";,\r\n"):
            raise EnvError(f"{name}: a source of {key} contains ';', ',' or a line break")
        policy[key] = listed
    return policy


def env_csp(name: str, default: dict[str, list[str]]) -> dict[str, list[str]]:
    """The default policy, changed by ``name``: a JSON object replaces the directives it names
    (``null`` removes one); a policy string replaces the whole policy."""
    raw = os.environ.get(name)
    policy = {key: list(sources) for key, sources in default.items()}
    if raw is None or raw.strip() == "":
        return policy
    if not raw.strip().startswith("{"):
        return parse_csp(name, raw)
    changes = env_json(name, {})
    if not isinstance(changes, dict):
        raise EnvError(f"{name} must be a policy string or a JSON object, got {raw!r}")
    removed = {str(key).strip().lower() for key, sources in changes.items() if sources is None}
    policy.update(parse_csp(name, {k: v for k, v in changes.items() if v is not None}))
    return {key: sources for key, sources in policy.items() if key not in removed}
