#!/usr/bin/env bash
# setup.sh [--base] — idempotent prerequisite check for the local stack.
# Prints one line naming the Debian package to install for anything missing,
# then (unless --base) runs every scripts/setup-*.sh with bash, in name order:
# hooks other parts add, e.g. setup-browser.sh (chromium + npm ci for the
# browser tests). Each hook must be idempotent and fast when already done.
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
if [[ "${1:-}" == "--base" ]]; then exit 0; fi
for hook in scripts/setup-*.sh; do
  if [[ -f "$hook" ]]; then bash "$hook"; fi
done
