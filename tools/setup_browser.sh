#!/usr/bin/env bash
# Chromium for the test that opens the MLflow UI in a real browser
# (tests/test_mlflow_ui.py): Debian's package, installed once. A machine
# without apt or root gets the command to run instead; that test then fails
# saying so, the others run.
set -uo pipefail
CHROMIUM=${BREFINE_CHROMIUM:-/usr/bin/chromium}
[[ -x "$CHROMIUM" ]] && exit 0
if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  printf '[setup %(%H:%M:%S)T] installing Chromium (Debian package) for the browser test\n' -1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/brefine-chromium-install.log 2>&1 ||
    { apt-get update -q >>/tmp/brefine-chromium-install.log 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>/tmp/brefine-chromium-install.log 2>&1; } ||
    echo "setup_browser.sh: could not install Chromium (log: /tmp/brefine-chromium-install.log)" >&2
else
  echo "setup_browser.sh: no Chromium at $CHROMIUM; install it (sudo apt-get install chromium) or" \
       "set BREFINE_CHROMIUM, else the browser test fails" >&2
fi
exit 0
