#!/usr/bin/env bash
# test.sh [go test args...] — starts ONE local stack on free ports, runs the
# whole module's tests against it (NODEBATCH_STACK_FILE), then stops it.
# Exits with go test's status. Extra args go to go test (e.g. -run X);
# NODEBATCH_TEST_PKGS narrows the packages (default ./...).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.nodebatch/test
state="$PWD/$dir/stack.json"
log="$PWD/$dir/stack.log"
mkdir -p "$dir"
rm -f "$state"
[[ -x .nodebatch/bin/nodebatch-stack ]] || go build -o .nodebatch/bin/nodebatch-stack ./emulators/cmd/stack
.nodebatch/bin/nodebatch-stack -build=false -free-ports -nodes 0 \
  -state-dir "$dir/stack" -state-file "$state" -kubeconfig "" >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
echo ">>> starting the shared test stack (log: $log)" >&2
# The stack writes the state file only once every part answers.
while [[ ! -s "$state" ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "!!! the local stack failed to start; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo ">>> stack ready; go test -race ./..." >&2
export NODEBATCH_STACK_FILE="$state"
# shellcheck disable=SC2086 # a package list
go test -race -count=1 -timeout "${NODEBATCH_TEST_TIMEOUT:-40m}" ${NODEBATCH_TEST_PKGS:-./...} "$@"
