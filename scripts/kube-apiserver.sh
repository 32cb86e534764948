#!/usr/bin/env bash
# Builds a real kube-apiserver and kube-controller-manager once per machine, into a cache
# outside the checkout, and prints the directory that holds them. A second run finds them and
# prints the same directory at once.
#
# Source: Debian bookworm's `kubernetes` source package (1.20.5+really1.20.2), built with
# Debian's golang-go 1.19. Its vendored github.com/modern-go/reflect2 1.0.1 crashes at run
# time under Go 1.18 and later, so it is replaced by Debian's golang-github-modern-go-reflect2-dev
# (1.0.2) before the build. etcd is Debian's etcd-server (3.4); this script installs it too.
#
# The cache: $BACKSTOP_KUBE_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/backstop. The binaries
# land in CACHE/kubernetes-VERSION/bin, written there only once the build has succeeded, so an
# interrupted build is started over next time rather than half-used.
#
# Usage: scripts/kube-apiserver.sh   (prints the bin directory on stdout; progress on stderr)
set -euo pipefail

version=1.20.2
source_version=1.20.5+really1.20.2
cache=${BACKSTOP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backstop}
out=$cache/kubernetes-$version
bin=$out/bin

say() { echo "kube-apiserver.sh: $*" >&2; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
apt_updated=""
apt_update() {
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
}

# etcd is needed at run time, whether or not the binaries are cached.
if ! command -v etcd >/dev/null 2>&1; then
  say "installing etcd-server"
  apt_update
  apt_install etcd-server
fi

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
  echo "$bin"
  exit 0
fi

say "building kube-apiserver $version into $out (once per machine: 4 to 13 minutes on 2 cores)"
# Build tools: Go, the replacement reflect2, rsync (the generators' staging) and dpkg-dev
# (apt-get source unpacks with dpkg-source).
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v make >/dev/null 2>&1 || need+=(make)
# `apt-get source` needs the deb-src lines, which Debian's images leave out.
src_list=/etc/apt/sources.list.d/backstop-deb-src.sources
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  say "enabling deb-src for bookworm in $src_list"
  $sudo tee "$src_list" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_updated=""
fi
apt_update
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt_install "${need[@]}"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/backstop-kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq kubernetes >/dev/null 2>&1
tree=$(find . -maxdepth 1 -type d -name "kubernetes-$source_version" | head -n 1)
[ -n "$tree" ] || { say "apt-get source kubernetes gave no source tree"; exit 1; }
cd "$tree"

rm -rf vendor/github.com/modern-go/reflect2
cp -rL /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod

# As debian/rules does: a GOPATH in which k8s.io/kubernetes is this tree.
mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
export GOPATH=$PWD/.go CGO_ENABLED=0 HOME=$work/home
mkdir -p "$HOME"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2

mkdir -p "$out"
staging=$(mktemp -d "$out/bin.XXXXXX")
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$staging/"
rm -rf "$bin"
mv "$staging" "$bin"
say "built $("$bin/kube-apiserver" --version)"
echo "$bin"
