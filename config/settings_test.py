"""Test settings: the embedded defaults, made fast and isolated.

DATABASE_URL and REDIS_URL still apply, so the same suite runs on SQLite + ORM broker and on
PostgreSQL + Redis (see .ci/run).
"""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "true")
# The suite never reads a developer's var/local.env (`make run` writes one): /dev/null is empty.
os.environ.setdefault("REELCAST_ENV_FILE", os.devnull)

from config.settings import *  # noqa: F403
from config.settings import DATABASES, Q_CLUSTER

_TMP = tempfile.mkdtemp(prefix="reelcast-test-")
MEDIA_ROOT = os.path.join(_TMP, "media")
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tasks run inline unless a test starts a real cluster.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
REELCAST_PROGRESS_WRITE_INTERVAL_S = 0.0
REELCAST_CANCEL_POLL_S = 0.0
REELCAST_C2PA_DIR = os.path.join(_TMP, "c2pa")
REELCAST_C2PA_DEV_CHAIN = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that a worker process started by a test sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_TMP, "test.sqlite3")}
