"""The project's structural rules, checked."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_platform_is_the_standard_library_module():
    import platform

    assert not (ROOT / "platform" / "__init__.py").exists()
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert callable(platform.python_version)


def test_web_process_never_imports_torch_or_diffusers():
    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE']='config.settings_test'; "
        "django.setup(); import config.urls, generation.tasks, generation.backends.wan; "
        "from django.test import Client; Client().get('/api/v1/schema/'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','diffusers','transformers')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


TENANT_OWNED = {
    "ModerationPolicy",
    "ReviewCase",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookDelivery",
    "WebhookThrottle",
    "BrandKit",
    "DeletionReceipt",
    "Subscription",
    "Invoice",
    "Template",
    "TemplateVersion",
    "Job",
    "IdempotencyKey",
    "ApiKey",
    "Membership",
    "UsageEvent",
    "ModerationDecision",
}


def _unscoped_uses(path: Path) -> list[str]:
    """`<TenantOwnedModel>.objects.<x>` where x is not for_tenant, in request-facing modules.

    A simple statement carrying ``# unscoped: <why>`` on any of its lines is a deliberate,
    explained exception.
    """
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    excused: set[int] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.Return | ast.Expr):
            span = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
            if any("# unscoped:" in lines[n - 1] for n in span):
                excused.update(span)
    problems = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "objects"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in TENANT_OWNED
            and node.attr != "for_tenant"
            and node.lineno not in excused
        ):
            problems.append(
                f"{path.relative_to(ROOT)}:{node.lineno} {node.value.value.id}.objects.{node.attr}"
            )
    return problems


def test_request_facing_modules_only_query_tenant_data_through_for_tenant():
    modules = sorted(
        {
            p
            for app in ("tenants", "generation", "billing", "moderation")
            for pattern in ("api.py", "*_api.py", "views.py", "*_views.py", "selectors.py")
            for p in (ROOT / app).glob(pattern)
        }
    )
    assert modules, "no request-facing modules found"
    problems = [problem for module in modules for problem in _unscoped_uses(module)]
    # A deliberate exception carries "# unscoped: <why>" on its line.
    assert problems == []


APPS = ("config", "tenants", "generation", "billing", "moderation")

# What setuptools would put in the wheel, read from pyproject.toml by setuptools itself (its
# build_py command, finalized but not run), with the warnings it gives on the way.
_WHEEL_CONTENTS = """
import json, sys, warnings
from setuptools.dist import Distribution
from setuptools.config.pyprojecttoml import apply_configuration
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dist = apply_configuration(Distribution({"script_name": "setup.py"}), "pyproject.toml")
    dist.get_command_obj("egg_info").egg_base = sys.argv[1]  # not in the checkout
    build_py = dist.get_command_obj("build_py")
    build_py.ensure_finalized()
    files = [module[2] for module in build_py.find_all_modules()]
    files += [f"{src}/{name}" for _, src, _, names in build_py.data_files for name in names]
print(json.dumps({"files": files, "warnings": [str(w.message).splitlines()[0] for w in caught]}))
"""


def test_the_wheel_ships_every_file_of_the_apps_and_setuptools_has_nothing_to_warn_about(
    tmp_path,
):
    out = subprocess.run(
        [sys.executable, "-c", _WHEEL_CONTENTS, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["warnings"] == []
    shipped = {Path(name).as_posix() for name in report["files"]}
    on_disk = {
        path.relative_to(ROOT).as_posix()
        for app in APPS
        for path in (ROOT / app).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert any(name.startswith("moderation/lexicons/zh/") for name in on_disk)
    assert sorted(on_disk - shipped) == []


# [text](target) and ![alt](target); <…> targets and an optional "title" after the target.
_MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PATH_IN_CODE = re.compile(r"`(\.\./[^`\s]+)`")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_in_the_readme_and_docs_names_a_file_in_the_repository():
    broken = []
    for document in _documents():
        text = document.read_text()
        targets = _MARKDOWN_LINK.findall(text) + _PATH_IN_CODE.findall(text)
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or an anchor in the same page
            path = (document.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert len(_documents()) >= 3
    assert broken == []
