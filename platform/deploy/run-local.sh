#!/usr/bin/env bash
# `make run`: the whole platform on one machine with the embedded defaults (SQLite, the ORM
# broker, local media, the CPU preview backend): migrate, seed the demo, start one django-q2
# worker and the web server, print where to go. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export DJANGO_DEBUG=${DJANGO_DEBUG:-true}
export REELCAST_PUBLIC_URL=${REELCAST_PUBLIC_URL:-http://$HOST:$PORT}
mkdir -p var

"$BIN/python" manage.py migrate --noinput -v 0
"$BIN/python" manage.py setup_schedules > /dev/null  # also billing schedules
keys=$("$BIN/python" manage.py seed_demo --public-origin "http://$HOST:$PORT")

"$BIN/python" manage.py qcluster > var/worker.log 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT INT TERM

cat <<MSG

  Reelcast is running on the embedded defaults.

  Dashboard:  http://$HOST:$PORT/app/
  API docs:   http://$HOST:$PORT/api/v1/docs/
  Worker log: var/worker.log

$(printf '%s\n' "$keys" | sed 's/^/  /')

  Try:  curl -s -H "Authorization: Bearer <school secret key>" http://$HOST:$PORT/api/v1/templates/

MSG
"$BIN/python" manage.py runserver "$HOST:$PORT" --noreload
