"""Reelcast settings: everything comes from the environment (see README, "Configuration").

The defaults are the embedded set-up: SQLite, django-q2 on the ORM broker, media on the local
filesystem, the CPU ``preview`` backend. Production sets DATABASE_URL (PostgreSQL), REDIS_URL,
REELCAST_STORAGE=s3 and points REELCAST_MODEL_DIR at the Wan weights.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from config.env import (
    env_bool,
    env_choice,
    env_csp,
    env_float,
    env_int,
    env_json,
    env_list,
    env_rate,
    env_str,
    load_local_env,
)
from generation.postprocess.aigc import check_producer_code

BASE_DIR = Path(__file__).resolve().parent.parent
# First of all: a local checkout's var/local.env (written once by `make run`) fills in what the
# environment leaves unset; the environment wins. Production has no such file.
load_local_env(BASE_DIR)
VAR_DIR = Path(env_str("REELCAST_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
REELCAST_PUBLIC_URL = env_str("REELCAST_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "tenants",
    "generation",
    "billing",
    "moderation",
]

MIDDLEWARE = [
    "config.middleware.RequestContextMiddleware",
    "config.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "config.cors.StorefrontCorsMiddleware",  # exact-origin CORS for the embed widget's calls
    "config.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.middleware.LoginRateLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'reelcast.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker share one SQLite file: WAL lets readers run beside the
    # writer, IMMEDIATE transactions take the write lock up front (no deadlocking upgrades),
    # and the timeout makes a writer wait for the other instead of failing at once.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- task queue -----------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
REELCAST_POOLS: dict = env_json(
    "REELCAST_POOLS",
    {"default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]}},
)
REELCAST_POOL_WORKERS = env_int("REELCAST_POOL_WORKERS", 1)
_q_common = {
    "timeout": env_int("REELCAST_TASK_TIMEOUT_S", 1800),
    # retry must exceed timeout, or a running task is handed out a second time.
    "retry": env_int("REELCAST_TASK_TIMEOUT_S", 1800) + 300,
    "max_attempts": 2,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Tasks",
    "poll": env_float("REELCAST_QUEUE_POLL_S", 0.5),
}
Q_CLUSTER = {
    "name": "default",
    "workers": env_int("REELCAST_CPU_WORKERS", 1),
    "recycle": 200,
    "sync": env_bool("REELCAST_TASKS_SYNC", False),
    **_q_common,
    # One cluster per pool; a worker process picks its pool with Q_CLUSTER_NAME=<pool> and
    # runs REELCAST_POOL_WORKERS task processes (1 = one GPU per worker process). A pool's
    # ``capacity`` is the number of such slots across all its machines: the dispatcher never
    # sends it more jobs than that.
    "ALT_CLUSTERS": {
        name: {"workers": REELCAST_POOL_WORKERS, **_q_common}
        for name in REELCAST_POOLS
        if name != "default"
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- cache ----------------------------------------------------------------------------------
# Rate-limit counters live here, so every web process must see the same cache: Redis when
# REDIS_URL is set, else the database (run `manage.py createcachetable` once, beside migrate).
# Under DJANGO_DEBUG (one development server, and the test suite) a per-process memory cache.
REELCAST_CACHE = env_choice(
    "REELCAST_CACHE",
    "locmem" if DEBUG else ("redis" if REDIS_URL else "db"),
    frozenset({"redis", "db", "locmem"}),
)
_cache_backends = {
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("REELCAST_CACHE_URL", "") or REDIS_URL,
    },
    "db": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "reelcast_cache"},
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
if REELCAST_CACHE == "redis" and not _cache_backends["redis"]["LOCATION"]:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("REELCAST_CACHE=redis needs REDIS_URL or REELCAST_CACHE_URL.")
CACHES = {"default": {**_cache_backends[REELCAST_CACHE], "KEY_PREFIX": "reelcast"}}

# --- storage --------------------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("REELCAST_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("REELCAST_STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "platform" / "static"]
REELCAST_STORAGE = env_str("REELCAST_STORAGE", "local")
if REELCAST_STORAGE == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME", "reelcast"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID", ""),
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY", ""),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
        },
    }
elif REELCAST_STORAGE == "local":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("REELCAST_STORAGE must be 'local' or 's3'.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.ApiKeyAuthentication",
        "tenants.auth.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.TenantRolePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # OPTIONS answers 405 instead of DRF's form metadata: that metadata instantiates serializers
    # for views that have none (a 500 the fuzzer found), and the schema documents everything.
    # CORS preflights are answered before any view (config/cors.py).
    "DEFAULT_METADATA_CLASS": None,
    # One budget per scope and caller (API key, user, or address); see config/security.py.
    "DEFAULT_THROTTLE_CLASSES": ["config.security.ScopedPrincipalThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": env_rate("REELCAST_RATE_READ", "1200/min"),
        "write": env_rate("REELCAST_RATE_WRITE", "300/min"),
        "jobs_create": env_rate("REELCAST_RATE_JOBS_CREATE", "120/min"),
        "anon": env_rate("REELCAST_RATE_ANON", "120/min"),
        "login": env_rate("REELCAST_RATE_LOGIN", "10/min"),
        # storefront visitor tokens, per publishable key and per key + client address, and
        # storefront job creates per visitor (see generation/storefront.py)
        "visitor_tokens_key": env_rate("REELCAST_RATE_VISITOR_TOKENS_KEY", "2000/hour"),
        "visitor_tokens_address": env_rate("REELCAST_RATE_VISITOR_TOKENS_ADDRESS", "10/hour"),
        "visitor_jobs": env_rate("REELCAST_RATE_VISITOR_JOBS", "10/hour"),
    },
}
# "<router basename>.<action>" -> throttle scope, for views that do not set throttle_scope.
REELCAST_THROTTLE_ACTIONS: dict = env_json(
    "REELCAST_THROTTLE_ACTIONS", {"job.create": "jobs_create", "batch.create": "jobs_create"}
)
# How many proxies of ours append to X-Forwarded-For in front of the app (compose: 1, Caddy;
# Kubernetes: 2, the Ingress and Caddy). 0 trusts only REMOTE_ADDR.
REELCAST_PROXY_COUNT = env_int("REELCAST_PROXY_COUNT", 0)
REST_FRAMEWORK["NUM_PROXIES"] = REELCAST_PROXY_COUNT
REELCAST_LOGIN_PATHS = env_list("REELCAST_LOGIN_PATHS", ["/accounts/login/", "/admin/login/"])
SPECTACULAR_SETTINGS = {
    "TITLE": "Reelcast API",
    "DESCRIPTION": "Templates in, personalised AI videos out. Authenticate with "
    "`Authorization: Bearer sk_…` (servers) or `pk_…` (storefront widget).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Request bodies larger than this are refused with 413 before they are read.
REELCAST_MAX_BODY_BYTES = env_int("REELCAST_MAX_BODY_BYTES", 12 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = REELCAST_MAX_BODY_BYTES
REELCAST_MAX_IMAGE_BYTES = env_int("REELCAST_MAX_IMAGE_BYTES", 8 * 1024 * 1024)
REELCAST_MAX_IMAGE_PIXELS = env_int("REELCAST_MAX_IMAGE_PIXELS", 40_000_000)
REELCAST_MAX_AUDIO_BYTES = env_int("REELCAST_MAX_AUDIO_BYTES", 8 * 1024 * 1024)
REELCAST_MAX_EVIDENCE_BYTES = env_int("REELCAST_MAX_EVIDENCE_BYTES", 8 * 1024 * 1024)
# Rosters (CSV or XLSX): at most this large and this many rows; rows become jobs in chunks of
# REELCAST_BATCH_CHUNK_ROWS, one task each, so a 10,000-row class list never hits a timeout.
REELCAST_ROSTER_MAX_BYTES = env_int("REELCAST_ROSTER_MAX_BYTES", 10 * 1024 * 1024)
REELCAST_ROSTER_MAX_ROWS = env_int("REELCAST_ROSTER_MAX_ROWS", 10_000)
REELCAST_BATCH_CHUNK_ROWS = env_int("REELCAST_BATCH_CHUNK_ROWS", 250)
REELCAST_MAX_VARIANTS = env_int("REELCAST_MAX_VARIANTS", 8)
REELCAST_IDEMPOTENCY_TTL_S = env_int("REELCAST_IDEMPOTENCY_TTL_S", 24 * 3600)
REELCAST_DOWNLOAD_TTL_S = env_int("REELCAST_DOWNLOAD_TTL_S", 24 * 3600)
REELCAST_DEFAULT_RETENTION_DAYS = env_int("REELCAST_DEFAULT_RETENTION_DAYS", 30)
REELCAST_PROGRESS_WRITE_INTERVAL_S = env_float("REELCAST_PROGRESS_WRITE_INTERVAL_S", 1.0)
# How often a worker re-reads the cancel flag (a GPU step takes longer than this, so a cancel
# lands within one step).
REELCAST_CANCEL_POLL_S = env_float("REELCAST_CANCEL_POLL_S", 0.2)

# --- scheduling -----------------------------------------------------------------------------
REELCAST_PRIORITY_AGING_S = env_int("REELCAST_PRIORITY_AGING_S", 600)
REELCAST_FAIR_SHARE_WINDOW_S = env_int("REELCAST_FAIR_SHARE_WINDOW_S", 3600)
REELCAST_FAIR_SHARE_IN_FLIGHT_MS = env_int("REELCAST_FAIR_SHARE_IN_FLIGHT_MS", 60_000)
REELCAST_LEASE_S = env_int("REELCAST_LEASE_S", 60)
REELCAST_HEARTBEAT_S = env_float("REELCAST_HEARTBEAT_S", 10.0)
REELCAST_WARM_UP = env_bool("REELCAST_WARM_UP", True)
# ETAs use measured times; these stand in for post-processing and moderation until a job has
# been timed through them (bench/postprocess.py's finishing pass: ~15 ms per frame-megapixel).
REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL = env_float(
    "REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL", 40.0
)
REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL = env_float(
    "REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL", 20.0
)
REELCAST_ETA_CACHE_S = env_int("REELCAST_ETA_CACHE_S", 60)  # how long measured rates are kept

# --- models ---------------------------------------------------------------------------------
REELCAST_MODEL_DIR = env_str("REELCAST_MODEL_DIR", "")
REELCAST_MODELS: dict = env_json("REELCAST_MODELS", {})
REELCAST_ALLOW_HUB_DOWNLOADS = env_bool("REELCAST_ALLOW_HUB_DOWNLOADS", False)
REELCAST_HARDWARE_CLASS = env_str("REELCAST_HARDWARE_CLASS", "")
REELCAST_WAN_OFFLOAD = env_str("REELCAST_WAN_OFFLOAD", "none")
REELCAST_WAN_VAE_TILING = env_bool("REELCAST_WAN_VAE_TILING", False)
REELCAST_WAN_ATTENTION = env_str("REELCAST_WAN_ATTENTION", "")
REELCAST_WAN_DEVICE = env_str("REELCAST_WAN_DEVICE", "")  # "" = cuda when present, else cpu
REELCAST_WAN_VAE_DTYPE = env_str("REELCAST_WAN_VAE_DTYPE", "float32")
REELCAST_WAN_CACHE_GPU_BUDGET_GB = env_float("REELCAST_WAN_CACHE_GPU_BUDGET_GB", 0.0)
REELCAST_WAN_CACHE_MAX_PIPELINES = env_int("REELCAST_WAN_CACHE_MAX_PIPELINES", 2)
REELCAST_DEFAULT_MODEL = env_str("REELCAST_DEFAULT_MODEL", "preview")
# The implicit AIGC label's ContentProducer: the operator's registered code (a letter or digit,
# then letters, digits, ".", "_", ":" or "-"; at most 64). A bad one stops the process at start.
REELCAST_AIGC_PRODUCER_CODE = env_str("REELCAST_AIGC_PRODUCER_CODE", "Reelcast")
try:
    check_producer_code(REELCAST_AIGC_PRODUCER_CODE)
except ValueError as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"REELCAST_AIGC_PRODUCER_CODE: {exc}") from None
REELCAST_METRICS_TOKEN = env_str("REELCAST_METRICS_TOKEN", "")

# --- moderation -------------------------------------------------------------------------------
REELCAST_MODERATION_IMAGE_CHECKS = env_bool("REELCAST_MODERATION_IMAGE_CHECKS", True)
REELCAST_MODERATION_THREADS = env_int("REELCAST_MODERATION_THREADS", 1)
# An optional cloud moderation provider (dotted path; "" = off). Nothing is sent unless set.
REELCAST_MODERATION_PROVIDER = env_str("REELCAST_MODERATION_PROVIDER", "")
REELCAST_MODERATION_PROVIDER_URL = env_str("REELCAST_MODERATION_PROVIDER_URL", "")
REELCAST_MODERATION_PROVIDER_KEY = env_str("REELCAST_MODERATION_PROVIDER_KEY", "")
REELCAST_MODERATION_PROVIDER_TIMEOUT_S = env_float("REELCAST_MODERATION_PROVIDER_TIMEOUT_S", 10.0)

# --- provenance -------------------------------------------------------------------------------
# The invisible watermark's key. Set it explicitly in production and never change it: videos
# are traceable only with the key they were marked with (default: derived from the secret key).
REELCAST_WATERMARK_KEY = env_str("REELCAST_WATERMARK_KEY", "")
# C2PA signing credentials: signing-chain.pem, signing-key.pem, root-ca.pem in this directory.
REELCAST_C2PA_DIR = env_str("REELCAST_C2PA_DIR", str(VAR_DIR / "c2pa"))
# Generate a development chain there when none exists (never in production).
REELCAST_C2PA_DEV_CHAIN = env_bool("REELCAST_C2PA_DEV_CHAIN", DEBUG)
# An RFC 3161 time-stamp authority that countersigns every C2PA signature ("" = no time stamp).
# When set, a video whose time stamp fails is not delivered: its job fails.
REELCAST_C2PA_TSA_URL = env_str("REELCAST_C2PA_TSA_URL", "")
REELCAST_TRACE_MAX_FRAMES = env_int("REELCAST_TRACE_MAX_FRAMES", 240)
# The trace index's snapshots, mapped read-only by every process of a host (share it between
# hosts, or each web host builds its own at its first trace). A new one is written every 15
# minutes once this many fingerprint rows (about 20 a video) were delivered after the last, or
# records in it were deleted.
REELCAST_TRACE_INDEX_DIR = env_str("REELCAST_TRACE_INDEX_DIR", str(VAR_DIR / "trace-index"))
REELCAST_TRACE_INDEX_TAIL_ROWS = env_int("REELCAST_TRACE_INDEX_TAIL_ROWS", 200_000)
# Public detection (/detect/, POST /api/v1/detect/): anyone may ask whether a video was made
# here, free and without an account. The name its answers give, the largest request body it
# reads (413 beyond, before reading), the seconds of video it decodes, uploads per address.
REELCAST_PLATFORM_NAME = env_str("REELCAST_PLATFORM_NAME", "Reelcast")
REELCAST_DETECT_MAX_BYTES = env_int("REELCAST_DETECT_MAX_BYTES", 50 * 1024 * 1024)
REELCAST_DETECT_MAX_SECONDS = env_float("REELCAST_DETECT_MAX_SECONDS", 20.0)
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["detect"] = env_rate("REELCAST_RATE_DETECT", "10/hour")

# --- tenant webhooks and live status ---------------------------------------------------------
# Private, loopback and link-local webhook targets are refused unless this is on (tests only).
REELCAST_WEBHOOKS_ALLOW_PRIVATE = env_bool("REELCAST_WEBHOOKS_ALLOW_PRIVATE", False)
REELCAST_WEBHOOK_TIMEOUT_S = env_float("REELCAST_WEBHOOK_TIMEOUT_S", 10.0)
REELCAST_WEBHOOK_SECRET_OVERLAP_S = env_int("REELCAST_WEBHOOK_SECRET_OVERLAP_S", 86400)
REELCAST_WEBHOOK_PROGRESS_INTERVAL_S = env_float("REELCAST_WEBHOOK_PROGRESS_INTERVAL_S", 2.0)
REELCAST_WEBHOOK_MAX_ENDPOINTS = env_int("REELCAST_WEBHOOK_MAX_ENDPOINTS", 20)
REELCAST_WEBHOOK_RETENTION_DAYS = env_int("REELCAST_WEBHOOK_RETENTION_DAYS", 30)
REELCAST_LIVE_POLL_S = env_float("REELCAST_LIVE_POLL_S", 0.5)
REELCAST_LIVE_HEARTBEAT_S = env_float("REELCAST_LIVE_HEARTBEAT_S", 15.0)
REELCAST_LIVE_MAX_S = env_float("REELCAST_LIVE_MAX_S", 900.0)
# A new event when the expected finish moves by this much (clients count eta_s down between).
REELCAST_LIVE_ETA_SLACK_S = env_float("REELCAST_LIVE_ETA_SLACK_S", 5.0)
REELCAST_JOB_TOKEN_TTL_S = env_int("REELCAST_JOB_TOKEN_TTL_S", 3600)
# Live streams hold a WSGI thread each: at most this many per web process (below its threads, so
# API requests always find one), and across processes per job, per client address and in all.
REELCAST_LIVE_STREAMS_PER_PROCESS = env_int("REELCAST_LIVE_STREAMS_PER_PROCESS", 2)
REELCAST_LIVE_STREAMS_PER_JOB = env_int("REELCAST_LIVE_STREAMS_PER_JOB", 3)
REELCAST_LIVE_STREAMS_PER_ADDRESS = env_int("REELCAST_LIVE_STREAMS_PER_ADDRESS", 10)
REELCAST_LIVE_MAX_STREAMS = env_int("REELCAST_LIVE_MAX_STREAMS", 500)
REELCAST_VISITOR_TOKEN_TTL_S = env_int("REELCAST_VISITOR_TOKEN_TTL_S", 21600)
BILLING_USAGE_ALERT_HOOK = "tenants.webhooks.usage_alert_hook"  # usage alerts -> usage.alert

# --- billing and Stripe -----------------------------------------------------------------------
# Stripe is off while STRIPE_SECRET_KEY is empty: usage is still recorded and pushed once a key
# is set. STRIPE_API_BASE points the SDK (API and meter events) at another address, such as a
# Stripe-compatible server in tests.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
STRIPE_WEBHOOK_TOLERANCE_S = env_int("STRIPE_WEBHOOK_TOLERANCE_S", 300)
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "").rstrip("/")
STRIPE_TIMEOUT_S = env_float("STRIPE_TIMEOUT_S", 20.0)
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
BILLING_DEFAULT_PLAN = env_str("BILLING_DEFAULT_PLAN", "")
BILLING_REQUIRE_PLAN = env_bool("BILLING_REQUIRE_PLAN", False)
BILLING_DUNNING_GRACE_S = env_int("BILLING_DUNNING_GRACE_S", 7 * 24 * 3600)
BILLING_CHECKOUT_SUCCESS_URL = env_str(
    "BILLING_CHECKOUT_SUCCESS_URL", f"{REELCAST_PUBLIC_URL}/app/billing/?checkout=success"
)
BILLING_CHECKOUT_CANCEL_URL = env_str(
    "BILLING_CHECKOUT_CANCEL_URL", f"{REELCAST_PUBLIC_URL}/app/billing/?checkout=canceled"
)
BILLING_PORTAL_RETURN_URL = env_str(
    "BILLING_PORTAL_RETURN_URL", f"{REELCAST_PUBLIC_URL}/app/billing/"
)
BILLING_METER_PUSH_BACKOFF_S = env_float("BILLING_METER_PUSH_BACKOFF_S", 30.0)
BILLING_METER_PUSH_BACKOFF_MAX_S = env_float("BILLING_METER_PUSH_BACKOFF_MAX_S", 3600.0)
BILLING_METER_PUSH_LEASE_S = env_int("BILLING_METER_PUSH_LEASE_S", 120)
BILLING_ROLLUP_DELAY_S = env_int("BILLING_ROLLUP_DELAY_S", 300)
BILLING_RECONCILE_DELAY_S = env_int("BILLING_RECONCILE_DELAY_S", 3600)
BILLING_CONCURRENCY_RETRY_AFTER_S = env_int("BILLING_CONCURRENCY_RETRY_AFTER_S", 30)
BILLING_QUOTE_CACHE_S = env_int("BILLING_QUOTE_CACHE_S", 300)
BILLING_QUOTE_SAMPLES = env_int("BILLING_QUOTE_SAMPLES", 200)
BILLING_QUOTE_MIN_SAMPLES = env_int("BILLING_QUOTE_MIN_SAMPLES", 5)
# JSON {"<model>": ms per frame-megapixel}: the quote's rate before a model has history.
BILLING_QUOTE_FALLBACK: dict = env_json("BILLING_QUOTE_FALLBACK", {})

# --- auth, i18n, security -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/app/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
# The shell's strings (platform/locale); each app keeps its own in <app>/locale.
LOCALE_PATHS = [BASE_DIR / "platform" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a proxy that ends TLS (an Ingress, Caddy with a domain): trust its X-Forwarded-Proto,
# and send plain-HTTP visitors to HTTPS. HSTS is only ever sent on HTTPS responses.
DJANGO_BEHIND_TLS_PROXY = env_bool("DJANGO_BEHIND_TLS_PROXY", False)
if DJANGO_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", DJANGO_BEHIND_TLS_PROXY and not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Preloading binds the whole registered domain to HTTPS for months: the operator's decision.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = env_list("DJANGO_SILENCED_SYSTEM_CHECKS", [])

# Content-Security-Policy for every response (config.middleware.SecurityHeadersMiddleware).
# REELCAST_CSP: a JSON object replaces the directives it names (null drops one), a policy string
# replaces the whole policy, "off" sends none.
_csp_default = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "media-src": ["'self'", "blob:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "object-src": ["'none'"],
}
REELCAST_CSP: dict = (
    {} if env_str("REELCAST_CSP", "").strip() == "off" else env_csp("REELCAST_CSP", _csp_default)
)
REELCAST_CSP_REPORT_ONLY = env_bool("REELCAST_CSP_REPORT_ONLY", False)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# Videos and posters are played from signed links: on the public URL (local storage) or on the
# object store (S3), which the dashboard's <video>/<img> must be allowed to load.
_media_origins = [_origin(REELCAST_PUBLIC_URL)]
if REELCAST_STORAGE == "s3":
    _s3 = STORAGES["default"]["OPTIONS"]
    if _s3["endpoint_url"]:
        _media_origins.append(_origin(_s3["endpoint_url"]))
    else:
        _bucket, _region = _s3["bucket_name"], _s3["region_name"] or "us-east-1"
        _media_origins += [
            f"https://{_bucket}.s3.amazonaws.com",
            f"https://{_bucket}.s3.{_region}.amazonaws.com",
        ]
REELCAST_MEDIA_ORIGINS = env_list("REELCAST_MEDIA_ORIGINS", [o for o in _media_origins if o])
for _directive in ("img-src", "media-src"):
    if _directive in REELCAST_CSP:
        REELCAST_CSP[_directive] += [
            o for o in REELCAST_MEDIA_ORIGINS if o not in REELCAST_CSP[_directive]
        ]
# Path prefix -> sources added to directives there. Checkout and the billing portal are forms
# that redirect to Stripe, and browsers hold a form's redirects to form-action.
REELCAST_CSP_PATH_ADDITIONS: dict = env_json(
    "REELCAST_CSP_PATH_ADDITIONS",
    {
        "/app/billing/": {
            "form-action": ["https://checkout.stripe.com", "https://billing.stripe.com"]
        }
    },
)
# The embed widget is framed and scripted by tenants' storefronts: no X-Frame-Options there, and
# frame-ancestors from here (the widget view may narrow it per key with response.csp_replace).
REELCAST_FRAMEABLE_PATHS = env_list("REELCAST_FRAMEABLE_PATHS", ["/embed/"])
REELCAST_EMBED_FRAME_ANCESTORS = env_list("REELCAST_EMBED_FRAME_ANCESTORS", ["*"])
REELCAST_PERMISSIONS_POLICY = env_str(
    "REELCAST_PERMISSIONS_POLICY",
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()",
)

# --- logging ------------------------------------------------------------------------------
# One handler, on stderr, for everything (Django's own loggers and django-q's included): JSON
# lines in production, text under DEBUG; every record gets the request/tenant/job ids and has
# secrets scrubbed before it is written (config/logging.py).
REELCAST_LOG_FORMAT = env_choice(
    "REELCAST_LOG_FORMAT", "text" if DEBUG else "json", frozenset({"json", "text"})
)
REELCAST_ACCESS_LOG = env_bool("REELCAST_ACCESS_LOG", not DEBUG)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "config.logging.ContextFilter"},
        "redact": {"()": "config.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {"()": "config.logging.JsonFormatter"},
        "text": {"()": "config.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": REELCAST_LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("REELCAST_LOG_LEVEL", "INFO")},
    "loggers": {
        # Naming these drops the handlers Django's defaults give them, so their records reach
        # the one handler above (formatted and scrubbed) instead of bypassing it.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django-q": {"level": env_str("REELCAST_QUEUE_LOG_LEVEL", "WARNING")},
    },
}

# --- email and password reset ----------------------------------------------------------------
# Dashboard users reset a forgotten password by email (/accounts/password-reset/). The console
# backend prints messages to the log: set EMAIL_BACKEND to
# django.core.mail.backends.smtp.EmailBackend and the EMAIL_HOST_* variables to send them.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Reelcast <no-reply@localhost>")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)  # seconds a link works
# Reset requests per client address and per email address; every request counts (a sign-in
# gives a successful attempt back, but a reset form always answers the same).
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["password_reset"] = env_rate(
    "REELCAST_RATE_PASSWORD_RESET", "5/hour"
)
REELCAST_PASSWORD_RESET_PATHS = env_list(
    "REELCAST_PASSWORD_RESET_PATHS", ["/accounts/password-reset/"]
)
