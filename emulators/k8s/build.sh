#!/usr/bin/env bash
# build.sh OUTDIR — builds kube-apiserver, kubectl and the embedded etcd for the
# local stack into OUTDIR, stamping the Kubernetes version so `kubectl version`
# works. Skips work when OUTDIR already holds binaries for this version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)" # the builds run from this folder: make OUTDIR absolute
version="$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")"
stamp="$out/.version"
want="$version $(sha256sum "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go" "$here/build.sh" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
  exit 0
fi
mkdir -p "$out"
major="$(echo "${version#v}" | cut -d. -f1)"
minor="$(echo "${version#v}" | cut -d. -f2)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
cd "$here"
if [[ ! -x "$out/kube-apiserver" ]] || [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  echo ">>> building kube-apiserver $version once, ~10 min (cached under $out afterwards)" >&2
fi
build() { # name pkg
  local start=$SECONDS
  echo ">>> go build $2" >&2
  # A ticker so people see the cold build is alive.
  ( while sleep 30; do echo ">>>   still building $1 ($((SECONDS - start))s)" >&2; done ) &
  local ticker=$!
  trap 'kill $ticker 2>/dev/null || true' RETURN
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
  echo ">>> built $1 in $((SECONDS - start))s" >&2
}
build etcd ./cmd/etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
echo "$want" > "$stamp"
