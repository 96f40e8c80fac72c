#!/usr/bin/env bash
# `make run`: the whole platform on one machine with the embedded defaults (SQLite, the ORM
# broker, local media, the CPU preview backend): write var/local.env once (local-env.sh),
# migrate, seed the demo, start one django-q2 worker and the web server, print where to go.
#
# This script supervises both: Ctrl-C (SIGINT) and SIGTERM (what a process manager sends)
# both stop the web server and the worker and wait for them, giving the worker
# REELCAST_STOP_GRACE_S (default 10) to finish before it is killed. Each child runs in its own
# process group (set -m), so a signal reaches the children only through this script, and the
# worker's task processes go with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
GRACE=${REELCAST_STOP_GRACE_S:-10}
VAR=${REELCAST_VAR_DIR:-var}
export REELCAST_PUBLIC_URL=${REELCAST_PUBLIC_URL:-http://$HOST:$PORT}

BIN=$BIN bash platform/deploy/local-env.sh
"$BIN/python" manage.py migrate --noinput -v 0
"$BIN/python" manage.py setup_schedules > /dev/null  # also billing schedules
keys=$("$BIN/python" manage.py seed_demo --public-origin "http://$HOST:$PORT")

worker=""
web=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop() {
  trap - INT TERM EXIT
  # The web server stops at once; the worker's main process stops its task processes.
  for pid in $web $worker; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  local waited=0
  while { alive "$web" || alive "$worker"; } && [ "$waited" -lt $((GRACE * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  # Whatever is left after the grace (or a task process orphaned by its parent): the whole
  # process group goes.
  for pid in $web $worker; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

set -m  # each background job in its own process group
"$BIN/python" manage.py qcluster > "$VAR/worker.log" 2>&1 &
worker=$!
"$BIN/python" manage.py runserver "$HOST:$PORT" --noreload &
web=$!
set +m

cat <<MSG

  Reelcast is running on the embedded defaults.

  Dashboard:  http://$HOST:$PORT/app/
  API docs:   http://$HOST:$PORT/api/v1/docs/
  Worker log: $VAR/worker.log

$(printf '%s\n' "$keys" | sed 's/^/  /')

  Try:  curl -s -H "Authorization: Bearer <school secret key>" http://$HOST:$PORT/api/v1/templates/

MSG
# `wait` returns as soon as a trapped signal arrives (a foreground command would delay the
# trap until it exited: the reason SIGTERM used to leave the worker running).
wait -n "$web" "$worker" || true
echo "the web server or the worker stopped; stopping the other" >&2
exit 1
