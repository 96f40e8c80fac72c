#!/usr/bin/env bash
# A local checkout's settings, written once: `make run` and `make manage` call this before
# anything else. It puts a generated DJANGO_SECRET_KEY and DJANGO_DEBUG=true in
# $REELCAST_VAR_DIR/local.env (default var/local.env), which config/settings.py loads before it
# reads any setting, so every manage.py command works on this checkout without exports. An
# existing file is never touched; with REELCAST_ENV_FILE set, that file is yours and this does
# nothing. Production has no such file (var/ is not in the images) and sets its own secret.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
[ -n "${REELCAST_ENV_FILE:-}" ] && exit 0
var=${REELCAST_VAR_DIR:-var}
file=$var/local.env
[ -e "$file" ] && exit 0
mkdir -p "$var"
secret=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(50))')
tmp=$(mktemp "$var/.local.env.XXXXXX")  # mode 600: the file holds a secret
{
  echo "# This checkout's settings, written once by platform/deploy/local-env.sh (make run)."
  echo "# config/settings.py loads it first; a variable set in the environment wins over it."
  echo "DJANGO_SECRET_KEY=$secret"
  echo "DJANGO_DEBUG=true"
} > "$tmp"
# -n: if another run wrote the file meanwhile, keep that one
mv -n "$tmp" "$file" && rm -f "$tmp"
echo "wrote $file: a generated DJANGO_SECRET_KEY and DJANGO_DEBUG=true" >&2
