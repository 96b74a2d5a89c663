#!/usr/bin/env bash
# The test command: installs what the tests need (as root on Debian: chromium for the browser tests),
# then runs the whole suite. GPU tests are marked `gpu` and skip themselves where no sm_90 GPU is.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium/chromedriver missing and not root: browser tests will be skipped" >&2
  fi
fi
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q "$@"
