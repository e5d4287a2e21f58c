#!/usr/bin/env bash
# Builds (first time only) the real kube-apiserver and kube-controller-manager v1.20.2 from Debian
# bookworm's `kubernetes` source package, and installs etcd-server, docker-registry and Go from Debian when missing.
# The binaries are cached outside the checkout, keyed by the source package version:
#   ~/.cache/customer-upgrades/<version>/bin/{kube-apiserver,kube-controller-manager}
# Prints the bin directory on its last line. Every failure ends with one line naming the step and the fix.
# Facts behind each step: GOPATH mode (1.20 does not build in module mode), the generated OpenAPI
# (not in the tarball), reflect2 1.0.2 (1.0.1 panics under Go >= 1.18), version stamps on vendored paths.
set -euo pipefail

CACHE_ROOT="${CUSTOMER_UPGRADES_CACHE:-$HOME/.cache/customer-upgrades}"
APT_DIR="$CACHE_ROOT/apt"
step="start"
reported=""
fail() { reported=1; echo "build-control-plane: step '$step' failed: $1" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || [ -n "$reported" ] || echo "build-control-plane: step '"'"'$step'"'"' failed (exit $rc); see the output above, fix it and run again (a partial build resumes)" >&2' EXIT

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else fail "needs root to apt-get install ${*: -1}; run as root or install it yourself"; fi; }

step="install Debian packages (golang-go, etcd-server, docker-registry)"
missing=()
command -v go >/dev/null 2>&1 || [ -x /usr/lib/go/bin/go ] || missing+=(golang-go)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# the OCI registry the real-cluster stack pushes the charts to (upgradectl/local/realcluster/registry.py)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-control-plane: installing ${missing[*]} from Debian" >&2
  as_root apt-get update -qq || fail "apt-get update failed; check the machine's apt sources"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed; install them by hand (apt-get install ${missing[*]})"
fi
export PATH="/usr/lib/go/bin:$PATH"

# A private apt configuration with deb-src lines for the machine's own mirrors: the machine's sources stay untouched.
step="find the kubernetes source package"
mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$APT_DIR/sources.list.d/debian-src.sources"
elif [ -f /etc/apt/sources.list ]; then
  grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$APT_DIR/sources.list.d/debian-src.list"
else
  fail "no apt sources found (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list); add a Debian bookworm mirror"
fi
APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
          -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache" -o "APT::Sandbox::User=root")
version="${KUBERNETES_SOURCE_VERSION:-}"
if [ -z "$version" ]; then
  cached=$(ls -1 "$CACHE_ROOT" 2>/dev/null | grep -E '^[0-9]' | sort -V | tail -1 || true)
  if [ -n "$cached" ] && [ -x "$CACHE_ROOT/$cached/bin/kube-apiserver" ] && [ -x "$CACHE_ROOT/$cached/bin/kube-controller-manager" ] && [ -z "${REFRESH:-}" ]; then
    version="$cached"
  else
    apt-get "${APT_OPTS[@]}" update -qq >/dev/null || fail "apt-get update of the deb-src lines failed; check the mirror in /etc/apt/sources.list.d"
    version=$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes | awk '/^Version:/ {print $2}' | sort -V | tail -1)
    [ -n "$version" ] || fail "no 'kubernetes' source package on the mirror; it is in Debian bookworm (1.20.5+really1.20.2)"
  fi
fi
OUT="$CACHE_ROOT/$version"
BIN="$OUT/bin"
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
  echo "build-control-plane: cached ($version)" >&2
  echo "$BIN"
  exit 0
fi

step="download the kubernetes source package $version"
SRC="$OUT/src"
mkdir -p "$SRC" "$BIN"
if ! ls "$SRC"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
  [ -d "$APT_DIR/lists" ] && ls "$APT_DIR/lists"/*Sources* >/dev/null 2>&1 || apt-get "${APT_OPTS[@]}" update -qq >/dev/null
  (cd "$SRC" && apt-get "${APT_OPTS[@]}" source --download-only -qq "kubernetes=$version" >/dev/null) \
    || fail "apt-get source kubernetes=$version failed; check the version (apt-cache showsrc kubernetes) and the network to the Debian mirror"
fi
orig=$(ls "$SRC"/kubernetes_*.orig.tar.* | head -1)

step="unpack the source"
TREE="$OUT/gopath/src/k8s.io/kubernetes"
if [ ! -f "$TREE/.unpacked" ]; then
  rm -rf "$TREE" && mkdir -p "$TREE"
  tar -xf "$orig" -C "$TREE" --strip-components=1 || fail "cannot unpack $orig; delete $SRC and run again"
  touch "$TREE/.unpacked"
fi

step="replace vendored reflect2 with Debian's 1.0.2"
if [ ! -f "$TREE/.reflect2" ]; then
  work="$OUT/reflect2"
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get download -qq golang-github-modern-go-reflect2-dev >/dev/null 2>&1) \
    || { as_root apt-get update -qq && (cd "$work" && apt-get download -qq golang-github-modern-go-reflect2-dev >/dev/null); } \
    || fail "apt-get download golang-github-modern-go-reflect2-dev failed; check the Debian mirror"
  dpkg-deb -x "$work"/golang-github-modern-go-reflect2-dev_*.deb "$work/root"
  rm -rf "$TREE/vendor/github.com/modern-go/reflect2"
  cp -r "$work/root/usr/share/gocode/src/github.com/modern-go/reflect2" "$TREE/vendor/github.com/modern-go/reflect2"
  rm -f "$TREE/vendor/github.com/modern-go/reflect2/go.mod" "$TREE/vendor/github.com/modern-go/reflect2/go.sum"
  touch "$TREE/.reflect2"
fi

export GOPATH="$OUT/gopath" GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOFLAGS=
cd "$TREE"

step="generate the OpenAPI definitions"
GEN="$TREE/pkg/generated/openapi/zz_generated.openapi.go"
if [ ! -s "$GEN" ]; then
  go build -o "$OUT/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen || fail "go build openapi-gen failed"
  # Every package carrying an openapi-gen tag, as build/root/Makefile.generated_files finds them.
  dirs=$(find . -not \( \( -path ./_output -o -path ./.git -o -path '*/third_party/*' -o -path '*/testdata/*' -o -path './vendor/*' \) -prune \) -name '*.go' -print0 \
         | xargs -0 grep -l --null '^// *+k8s:openapi-gen=' | xargs -0 -n1 dirname | sed 's|^\./||' | LC_ALL=C sort -u)
  vdirs=$(find -L ./vendor/k8s.io -name '*.go' -print0 2>/dev/null | xargs -0 grep -l --null '^// *+k8s:openapi-gen=' | xargs -0 -n1 dirname | sed 's|^\./||' | LC_ALL=C sort -u)
  inputs=$( { for d in $dirs; do case "$d" in staging/*) ;; *) echo "k8s.io/kubernetes/$d";; esac; done; for d in $vdirs; do echo "k8s.io/kubernetes/$d"; done; } | LC_ALL=C sort -u | paste -sd, -)
  "$OUT/openapi-gen" --logtostderr -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -o "$GOPATH/src" \
    --report-filename "$OUT/openapi-violations.list" >"$OUT/openapi-gen.log" 2>&1 \
    || fail "openapi-gen failed (log: $OUT/openapi-gen.log)"
  [ -s "$GEN" ] || fail "openapi-gen wrote nothing (log: $OUT/openapi-gen.log)"
fi

step="go build kube-apiserver and kube-controller-manager"
V=k8s.io/kubernetes/vendor/k8s.io
ldflags="-s -w"
for p in "$V/component-base/version" "$V/client-go/pkg/version"; do
  ldflags="$ldflags -X $p.gitVersion=v1.20.2 -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
start=$(date +%s)
go build -p "${BUILD_JOBS:-2}" -ldflags "$ldflags" -o "$BIN.partial/" ./cmd/kube-apiserver ./cmd/kube-controller-manager \
  || fail "go build failed; see the compiler output above"
mv "$BIN.partial/kube-apiserver" "$BIN.partial/kube-controller-manager" "$BIN/" && rmdir "$BIN.partial"
echo "build-control-plane: built $version in $(( $(date +%s) - start ))s" >&2
step="done"
echo "$BIN"
