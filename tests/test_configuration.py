"""The README's configuration table and what the server reads are the same list.

A variable the README documents but settings never read is a promise the deployment breaks (this
is how `STRIPE_SECRET_KEY` went unread); a variable settings read but the README never mentions
is a knob nobody can find. Both directions fail here. The last test starts a Python process with
the production settings module and only environment variables, as an operator does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Variables the table documents that something other than config/settings.py reads, each with
# the file that reads it (checked below, so this list cannot go stale either).
READ_ELSEWHERE = {
    "Q_CLUSTER_NAME": "generation/workers.py",
    "REELCAST_ENV_FILE": "config/env.py",
    "REELCAST_DEMO_PASSWORD": "tenants/management/commands/seed_demo.py",
}


def _documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def _read_by_settings() -> set[str]:
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env_")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_every_documented_variable_is_read():
    unread = _documented() - _read_by_settings() - set(READ_ELSEWHERE)
    assert unread == set(), f"README documents variables nothing reads: {sorted(unread)}"


def test_every_variable_settings_read_is_documented():
    undocumented = _read_by_settings() - _documented()
    assert undocumented == set(), f"settings read undocumented variables: {sorted(undocumented)}"


def test_variables_read_elsewhere_are_read_there():
    for name, path in READ_ELSEWHERE.items():
        assert name in _documented(), name
        assert name in (ROOT / path).read_text(), f"{path} no longer reads {name}"


def test_stripe_and_billing_variables_reach_the_production_settings(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "REELCAST_", "STRIPE_", "BILLING_", "DATABASE_URL"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "s" * 50,
            "REELCAST_VAR_DIR": str(tmp_path),
            "STRIPE_SECRET_KEY": "sk_test_operator",
            "STRIPE_WEBHOOK_SECRET": "whsec_operator",
            "STRIPE_API_BASE": "http://127.0.0.1:12111/",
            "STRIPE_TIMEOUT_S": "3.5",
            "BILLING_REQUIRE_PLAN": "true",
            "BILLING_DEFAULT_PLAN": "school",
            "BILLING_DUNNING_GRACE_S": "60",
            "BILLING_QUOTE_FALLBACK": '{"preview": 12}',
        }
    )
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "from billing import stripe_gateway as g; "
        "print(json.dumps([s.STRIPE_SECRET_KEY, s.STRIPE_WEBHOOK_SECRET, s.STRIPE_API_BASE, "
        "s.STRIPE_TIMEOUT_S, s.BILLING_REQUIRE_PLAN, s.BILLING_DEFAULT_PLAN, "
        "s.BILLING_DUNNING_GRACE_S, s.BILLING_QUOTE_FALLBACK, g.is_configured()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        "sk_test_operator",
        "whsec_operator",
        "http://127.0.0.1:12111",
        3.5,
        True,
        "school",
        60,
        {"preview": 12},
        True,
    ]
