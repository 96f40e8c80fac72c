"""Log records as one JSON object per line, tagged with the request, tenant and job they serve,
and with secrets taken out before any handler writes them.

``REELCAST_LOG_FORMAT`` picks ``JsonFormatter`` (production) or ``TextFormatter`` (DEBUG). Both
filters sit on every handler in ``settings.LOGGING``:

- ``ContextFilter`` copies the ids bound with ``log_context(...)`` onto each record: the
  request middleware binds ``request_id``; job tasks wrap their work in
  ``log_context(job_id=..., tenant_id=...)``.
- ``RedactSecretsFilter`` rewrites the record itself (message, arguments, traceback, string
  extras), so every handler after it, an error tracker's included, sees only the redacted text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("request_id", "tenant_id", "job_id")
REDACTED = "[REDACTED]"

_ids: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("reelcast_log_ids")


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Tag every record logged inside the block (in this thread or task) with ``ids``.

    Nested blocks add to the outer ids; leaving a block restores them. ``None`` values are
    left out, so ``log_context(tenant_id=job.tenant_id, job_id=job.id)`` is safe for any job.
    """
    token = _ids.set({**_ids.get({}), **_clean(ids)})
    try:
        yield
    finally:
        _ids.reset(token)


def bind_log_context(**ids: object) -> None:
    """Add ids to the enclosing ``log_context`` block (the request's, say, once the tenant is
    known). Outside any block the ids would outlive the work, so this does nothing there."""
    current = _ids.get(None)
    if current is not None:
        _ids.set({**current, **_clean(ids)})


def current_log_context() -> dict[str, str]:
    return dict(_ids.get({}))


def _clean(ids: dict[str, object]) -> dict[str, str]:
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    return {name: str(value) for name, value in ids.items() if value is not None}


class ContextFilter(logging.Filter):
    """Copy the bound ids onto the record (an id given with ``extra=`` wins).

    Django logs a request's 4xx/5xx line after the middleware has returned, with the request
    in ``extra``: its ids are read from the request then.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get({})
        request = getattr(record, "request", None)
        if not ids and request is not None:
            tenant = getattr(getattr(request, "auth", None), "tenant", None)
            ids = _clean(
                {
                    "request_id": getattr(request, "request_id", None),
                    "tenant_id": getattr(tenant, "pk", None),
                }
            )
        for name, value in ids.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def adopt_logger(name: str, *, level: int = logging.WARNING) -> None:
    """Bring a library's loggers that install their own handlers on import back under ours:
    jieba writes DEBUG lines to stderr; torch gives ``torch`` and its registered children
    stderr handlers and stops them propagating. Their handlers go, their records propagate to
    the configured handler (formatted, tagged and scrubbed), ``name`` from ``level`` up. Call
    it right after the import."""
    family = [
        item
        for logger_name, item in list(logging.root.manager.loggerDict.items())
        if (logger_name == name or logger_name.startswith(name + "."))
        and isinstance(item, logging.Logger)
        and (item.handlers or not item.propagate)
    ]
    for item in family:
        for handler in item.handlers[:]:
            item.removeHandler(handler)
        item.propagate = True
        item.setLevel(logging.NOTSET)
    logging.getLogger(name).setLevel(level)


# --- secrets ---------------------------------------------------------------------------------

# Our API keys keep their 12-character lookup prefix (shown in the dashboard, not a secret) so a
# log still says which key; everything after it goes. Stripe keys (sk_live_, rk_test_, ...) take
# the same path.
_KEY_RE = re.compile(r"\b((?:sk|pk|rk)_[A-Za-z0-9_-]{9})[A-Za-z0-9_-]+")
_SECRET_NAME_RE = re.compile(r"password|passwd|secret|api_key|apikey", re.IGNORECASE)


def _secret_assignment(found: re.Match[str]) -> str:
    if _SECRET_NAME_RE.search(found.group(1)) is None:
        return found.group(0)
    return found.group(1) + found.group(2) + REDACTED


_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (
        re.compile(r"\b(Bearer|Basic|Token|Digest)(\s+)[A-Za-z0-9._~+/=:-]+", re.IGNORECASE),
        r"\1\2" + REDACTED,
    ),
    # scheme://user:password@host (database, Redis, broker and S3 URLs); the scheme is taken
    # from the start of its run of characters, so a long run is not rescanned from each one
    (
        re.compile(r"((?<![a-zA-Z0-9+.-])[a-zA-Z0-9+.-]++://[^\s:/@]*:)[^\s/@]+@"),
        r"\1" + REDACTED + "@",
    ),
    # bearer material in query strings: job event tokens, presigned S3 signatures, keys
    (
        re.compile(
            r"([?&](?:token|access_token|api_key|apikey|key|secret|password|signature|sig"
            r"|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s\"'#,;<>()]+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # signed download links: /dl/<token>/<filename>
    (re.compile(r"(/dl/)[^/\s\"']+/"), r"\1" + REDACTED + "/"),
    # "password": "…", client_secret=…, api_key: …
    (
        # The name is taken whole and possessively from its start (a log line carries request
        # paths: backtracking over "a-a-a-…" made this quadratic, 8 s for 8,000 characters);
        # _secret_assignment keeps only names that contain one of the words.
        re.compile(
            r"(?<![\w-])([\w-]++)([\"']?\s*+[:=]\s*+[\"']?)(?!\[REDACTED\])([^\s\"',;&}]+)",
            re.IGNORECASE,
        ),
        _secret_assignment,
    ),
)

# Settings whose values are secrets, by name; their literal values are scrubbed wherever they
# appear. Short values are left alone: they would scrub ordinary words.
_SECRET_SETTING_RE = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY|_KEYS|KEY_FALLBACKS)$")
_MIN_SECRET_LENGTH = 8


def secret_setting_values() -> list[str]:
    """The values of secret settings (by name), database passwords and storage secret keys."""
    from django.conf import settings

    values: list[str] = []
    for name in dir(settings):
        if name.isupper() and _SECRET_SETTING_RE.search(name):
            value = getattr(settings, name, None)
            values.extend(value if isinstance(value, list | tuple) else [value])
    for database in getattr(settings, "DATABASES", {}).values():
        values.append(database.get("PASSWORD"))
    for storage in getattr(settings, "STORAGES", {}).values():
        options = storage.get("OPTIONS") or {}
        values.extend(options.get(name) for name in ("secret_key", "security_token"))
    return sorted(
        {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH},
        key=len,
        reverse=True,
    )


def redact(text: str, literals: re.Pattern[str] | None = None) -> str:
    """``text`` without secrets: known secret values first, then credentials in headers and
    URLs, then anything shaped like one of our keys or Stripe's."""
    if literals is not None:
        text = literals.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _KEY_RE.sub(r"\1" + REDACTED, text)


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    *CONTEXT_FIELDS,
}


class RedactSecretsFilter(logging.Filter):
    """Scrub API keys, webhook and Stripe secrets, credentials and secret settings from records.

    The message is formatted here (``msg % args``) and the record's ``args`` dropped, so no
    formatter can put a raw argument back; a traceback is formatted and scrubbed into
    ``exc_text``, which every ``logging.Formatter`` prints instead of formatting ``exc_info``
    again (``exc_info`` stays for handlers that want the exception object itself).
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._literals: re.Pattern[str] | None = None
        self._loaded_for: object = None

    def _literal_pattern(self) -> re.Pattern[str] | None:
        from django.conf import settings

        # read once per settings object: override_settings (tests) swaps the object
        wrapped = getattr(settings, "_wrapped", None)
        if wrapped is not self._loaded_for:
            try:
                values = secret_setting_values()
            except Exception:  # settings not configured (a bare script): patterns still apply
                return None
            self._literals = re.compile("|".join(map(re.escape, values))) if values else None
            self._loaded_for = wrapped
        return self._literals

    def filter(self, record: logging.LogRecord) -> bool:
        literals = self._literal_pattern()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg = redact(message, literals)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, literals)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, literals)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value, literals))
        return True


# --- formatters ------------------------------------------------------------------------------


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    the context ids that are known, ``exception`` and ``stack`` when present, and any extras
    given as plain values (strings, numbers, booleans)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value)
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and isinstance(value, str | int | float | bool):
                entry.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message [request_id=… tenant_id=…]`` for a developer's terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{line} [{ids}]" if ids else line
