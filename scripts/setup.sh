#!/usr/bin/env bash
# setup.sh — idempotent prerequisite check for the local stack. Prints one
# line naming the Debian package to install for anything missing, then runs
# every executable in scripts/setup.d/ (hooks: e.g. chromium + npm ci for the
# browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
sdk="${NODEBATCH_CLOUD_SDK:-/usr/lib/google-cloud-sdk}"
missing=0
need() { # description test-command... ; last arg is the package hint
  local what="$1" hint="$2"; shift 2
  if ! "$@" >/dev/null 2>&1; then
    echo "setup: $what missing: install $hint" >&2
    missing=1
  fi
}
need "Go" "Go 1.26 (https://go.dev/dl)" command -v go
need "Java" "Debian package openjdk-17-jre-headless" command -v java
need "Firestore emulator" "Debian package google-cloud-cli-firestore-emulator" test -f "$sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
need "Pub/Sub emulator" "Debian package google-cloud-cli-pubsub-emulator" test -d "$sdk/platform/pubsub-emulator/lib"
if [[ $missing != 0 ]]; then exit 1; fi
if [[ -d scripts/setup.d ]]; then
  for hook in scripts/setup.d/*; do
    if [[ -x "$hook" ]]; then "$hook"; fi
  done
fi
