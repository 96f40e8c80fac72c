"""gunicorn settings for the web image (`gunicorn --config platform/deploy/gunicorn.conf.py`).

GUNICORN_WORKERS and GUNICORN_THREADS size a pod; the rest is fixed so that every deployment
drains and times out the same way. Not a module of the application: nothing imports it.
"""

import os

# Inside a container: the proxy reaches it over the container network.
bind = "0.0.0.0:8000"
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# The heartbeat file lives in memory: the root filesystem may be read-only.
worker_tmp_dir = "/dev/shm"  # noqa: S108 (gunicorn heartbeat files, per-container tmpfs)
timeout = 60
# On SIGTERM, in-flight requests get this long; stop_grace_period and
# terminationGracePeriodSeconds leave room for it.
graceful_timeout = 30
keepalive = 5
# Only the proxy can reach the port, so its X-Forwarded-* headers are believed.
forwarded_allow_ips = "*"
accesslog = "-"
errorlog = "-"
