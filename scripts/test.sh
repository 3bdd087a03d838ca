#!/usr/bin/env bash
# Set up everything the tests need, then run them; pytest's exit code is this script's.
#
#   bash scripts/test.sh                 # the whole suite
#   bash scripts/test.sh -k bad_input    # extra arguments go to pytest
#   bash scripts/test.sh --setup-only    # only the setup (scripts/demo.sh uses it)
#   bash scripts/test.sh --fast          # the unit tier: no Docker engine needed
#
# Idempotent: a second run reuses the engine, the base image and the virtualenv (.venv).
# As root on Debian it installs what is missing (docker.io, busybox-static, openssh-client);
# elsewhere it says what to install. CI runs it through .ci/run in a fresh clone.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

setup_only=false
fast=false
if [ "${1:-}" = "--setup-only" ]; then setup_only=true; shift; fi
if [ "${1:-}" = "--fast" ]; then fast=true; shift; fi

# 1. A Docker engine and the offline base image of the host image (not for the unit tier).
$fast || bash scripts/setup-engine.sh

# 2. What the tests use besides Python: a static busybox (a 2 MB image built FROM scratch,
#    since nothing can be pulled), an ssh client, and cloud-init and shellcheck (the aws hosts'
#    user-data is checked against cloud-init's schema, its scripts with shellcheck).
missing=()
if [ ! -x /bin/busybox ]; then
  missing+=(busybox-static)
elif command -v file >/dev/null 2>&1 && ! file -b /bin/busybox | grep -q 'statically linked'; then
  missing+=(busybox-static)  # Debian's plain `busybox` is dynamic: useless in a FROM scratch image
fi
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v cloud-init >/dev/null 2>&1 || missing+=(cloud-init)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
# The browser tests of `classroom web` (tests/test_web.py): Debian's chromium and its driver.
if ! $fast; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    log "missing ${missing[*]}: install them (apt-get install ${missing[*]}); the tests that need them will skip"
  fi
fi

# 3. The project in a virtualenv of its own, with the test and aws extras.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  if ! "$python" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python=/usr/bin/python3
      "$python" -m venv .venv
    else
      log "cannot create a virtualenv with $python: install python3-venv"; exit 2
    fi
  fi
fi
stamp=.venv/.classroom-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing the project and its test dependencies into .venv (a minute or two the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,aws]'
  touch "$stamp"
fi
log "ready: $(.venv/bin/classroom --help >/dev/null && echo 'classroom installed in .venv/bin')"

if $setup_only; then exit 0; fi

# 4. The tests. -p no:cacheprovider: a read-only or shared checkout gets no .pytest_cache.
# Bytecode is kept (__pycache__ is ignored by git, and skipped where the checkout is read-only):
# compiling the package and rewriting the tests' asserts again on every run cost the unit tier 2-3 s.
if $fast; then
  # Every test that uses the engine is marked `engine` (tests/conftest.py marks them by fixture,
  # a few by hand); the rest needs no engine and runs in one process.
  exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "not engine" "$@"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
