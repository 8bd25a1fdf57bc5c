#!/usr/bin/env bash
# Builds (once) the Kubernetes control plane the cluster tests run against and caches it
# outside the repository:
#
#   $SNUG_CLUSTER_CACHE/bin/{kube-apiserver,kube-controller-manager,etcd,kubectl}
#
# Everything comes from Debian bookworm through apt: the Kubernetes 1.20.2 source package
# (with its vendor/ tree), Go 1.19, etcd 3.4 and kubectl 1.20. Nothing is installed system-wide
# except `rsync` (the Kubernetes Makefile needs it) when it is missing; the rest is downloaded
# with a private APT configuration and unpacked under the cache directory.
#
# Idempotent: when the four binaries are in the cache it prints their path and exits.
set -euo pipefail

KUBE_VERSION=v1.20.2
CACHE=${SNUG_CLUSTER_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/snug-cluster/kubernetes-${KUBE_VERSION}}
BIN=${CACHE}/bin
WORK=${CACHE}/build
BINARIES=(kube-apiserver kube-controller-manager etcd kubectl)
# What the cached binaries were built with; a change here rebuilds them (incrementally).
RECIPE="kubernetes ${KUBE_VERSION}, go 1.19, reflect2 1.0.2, openapi zero-value fix"

step() { printf '[snug cluster build] %s\n' "$*" >&2; }
fail() {
    printf '[snug cluster build] ERROR: %s\n' "$*" >&2
    exit 1
}
trap 'fail "step failed at line ${LINENO}: ${BASH_COMMAND}"' ERR

cached() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x ${BIN}/${b} ]] || return 1; done
    [[ $(cat "${BIN}/.recipe" 2>/dev/null) == "${RECIPE}" ]]
}

if cached; then
    step "cached: ${BIN}"
    exit 0
fi

# One build at a time per cache (parallel test runs wait for the first one's result).
mkdir -p "$(dirname "${CACHE}")"
exec 9>"${CACHE}.lock"
if ! flock -n 9; then
    step "another build of ${CACHE} is running; waiting for it"
    flock 9
fi
if cached; then
    step "cached: ${BIN}"
    exit 0
fi

step "building Kubernetes ${KUBE_VERSION} into ${CACHE} (first run only, ~10 min on 2 cores)"
mkdir -p "${BIN}" "${WORK}"

# --- private APT configuration: the machine's Debian mirror, with deb-src lines -------------
# Only our own lists and caches are touched; the system's APT state is left as it is.
mirror() {
    local m
    m=$(grep -rhoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        grep -v security | head -n1 | tr -d ' ' || true)
    printf '%s' "${m:-http://deb.debian.org/debian}"
}
setup_apt() {
    local apt=${WORK}/apt m
    m=$(mirror)
    mkdir -p "${apt}/lists/partial" "${apt}/archives/partial" "${apt}/parts" "${apt}/prefs"
    cat >"${apt}/sources.list" <<EOF
deb ${m} bookworm main
deb-src ${m} bookworm main
deb ${m} bookworm-updates main
deb-src ${m} bookworm-updates main
deb ${m%/debian*}/debian-security bookworm-security main
deb-src ${m%/debian*}/debian-security bookworm-security main
EOF
    cat >"${apt}/apt.conf" <<EOF
Dir::Etc::SourceList "${apt}/sources.list";
Dir::Etc::SourceParts "${apt}/parts";
Dir::Etc::PreferencesParts "${apt}/prefs";
Dir::State::Lists "${apt}/lists";
Dir::Cache "${apt}/cache";
Dir::Cache::Archives "${apt}/archives";
APT::Sandbox::User "root";
EOF
    export APT_CONFIG=${apt}/apt.conf
    if [[ ! -e ${apt}/lists/.updated ]]; then
        step "apt-get update (private lists, mirror ${m})"
        apt-get update -qq || fail "apt-get update failed (is ${m} reachable?)"
        touch "${apt}/lists/.updated"
    fi
}

# Downloads a binary package and unpacks it under $WORK/root (no installation).
unpack() {
    local pkg=$1 deb
    mkdir -p "${WORK}/debs" "${WORK}/root"
    deb=$(ls "${WORK}"/debs/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [[ -z ${deb} ]]; then
        step "downloading ${pkg}"
        (cd "${WORK}/debs" && apt-get download -qq "${pkg}") || fail "apt-get download ${pkg} failed"
        deb=$(ls "${WORK}"/debs/"${pkg}"_*.deb | head -n1)
    fi
    dpkg-deb -x "${deb}" "${WORK}/root"
}

ensure_rsync() {
    command -v rsync >/dev/null && return
    [[ $(id -u) == 0 ]] || fail "rsync is missing and we are not root: apt-get install rsync"
    step "installing rsync (the Kubernetes Makefile needs it)"
    APT_CONFIG=${APT_CONFIG} DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null ||
        fail "apt-get install rsync failed"
}

fetch_source() {
    local src=${WORK}/src
    if [[ -d ${src}/kubernetes/vendor ]]; then return; fi
    step "apt-get source --download-only kubernetes"
    mkdir -p "${src}"
    (cd "${src}" && apt-get source -qq --download-only kubernetes) ||
        fail "apt-get source kubernetes failed (needs the bookworm deb-src index)"
    local orig
    orig=$(ls "${src}"/kubernetes_*.orig.tar.* | head -n1) || fail "no upstream tarball downloaded"
    step "unpacking $(basename "${orig}")"
    rm -rf "${src}/kubernetes.tmp" && mkdir -p "${src}/kubernetes.tmp"
    tar -xf "${orig}" -C "${src}/kubernetes.tmp" --strip-components=1
    [[ -d ${src}/kubernetes.tmp/vendor ]] || fail "the upstream tarball has no vendor/ directory"
    mv "${src}/kubernetes.tmp" "${src}/kubernetes"
}

# The vendored reflect2 1.0.1 crashes Go >= 1.18 builds (SIGSEGV in mapiterinit) the first
# time a webhook returns a patch; Debian's 1.0.2 is the fix later Kubernetes releases took.
replace_reflect2() {
    local vendored=${WORK}/src/kubernetes/vendor/github.com/modern-go/reflect2
    local debian=${WORK}/root/usr/share/gocode/src/github.com/modern-go/reflect2
    [[ -f ${vendored}/.snug-replaced ]] && return
    unpack golang-github-modern-go-reflect2-dev
    [[ -d ${debian} ]] || fail "golang-github-modern-go-reflect2-dev has no ${debian}"
    step "replacing vendored reflect2 with Debian's $(ls "${WORK}"/debs/golang-github-modern-go-reflect2-dev_*.deb | sed 's/.*_\(.*\)_.*/\1/')"
    rm -rf "${vendored}"
    cp -rL "${debian}" "${vendored}"
    rm -rf "${vendored}"/debian "${vendored}"/.pc
    # go.mod/go.sum and vendor/modules.txt still name v1.0.1; with -mod=vendor Go trusts the
    # vendor tree, so only the sources change.
    touch "${vendored}/.snug-replaced"
}

# Go >= 1.19 converts "" to an interface pointing at the runtime's shared zero value, the same
# pointer reflect.Zero returns, so the vendored OpenAPI validators' "zero value" test
# (reflect.DeepEqual of two reflect.Values) takes every empty string for null: custom resources
# with "" in a string field, and CRDs defaulting a string to "", are refused ("must be of type
# string: null"). Built with the Go it was released with, that test only ever matched nil.
patch_zero_values() {
    local f
    for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go \
        vendor/github.com/go-openapi/validate/type.go; do
        f=${WORK}/src/kubernetes/${f}
        [[ -f ${f} ]] || fail "${f} missing: cannot apply the zero-value fix"
        grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "${f}" || continue
        step "OpenAPI validation: empty strings are not null ($(basename "$(dirname "$(dirname "${f}")")")/validate)"
        sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "${f}"
    done
}

build_kubernetes() {
    local goroot=${WORK}/root/usr/lib/go-1.19
    [[ -x ${goroot}/bin/go ]] || { unpack golang-1.19-go; unpack golang-1.19-src; }
    [[ -x ${goroot}/bin/go ]] || fail "Go 1.19 not found at ${goroot}"
    step "make WHAT='cmd/kube-apiserver cmd/kube-controller-manager' with $("${goroot}/bin/go" version)"
    local start=${SECONDS}
    (
        cd "${WORK}/src/kubernetes"
        export GOROOT=${goroot} PATH=${goroot}/bin:${PATH} GOPROXY=off GOFLAGS=-mod=vendor \
            CGO_ENABLED=0 KUBE_GIT_VERSION=${KUBE_VERSION} KUBE_GIT_TREE_STATE=clean \
            GOCACHE=${WORK}/gocache GOPATH=${WORK}/gopath
        nice -n 10 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
    ) || fail "make failed (see the output above)"
    step "built in $((SECONDS - start)) s"
    local out=${WORK}/src/kubernetes/_output/local/bin/linux/amd64
    cp "${out}/kube-apiserver" "${out}/kube-controller-manager" "${BIN}/"
    echo "${RECIPE}" >"${BIN}/.recipe"
}

install_tools() {
    unpack etcd-server
    unpack kubernetes-client
    cp "${WORK}/root/usr/bin/etcd" "${BIN}/etcd"
    cp "${WORK}/root/usr/bin/kubectl" "${BIN}/kubectl"
}

setup_apt
ensure_rsync
[[ -x ${BIN}/etcd && -x ${BIN}/kubectl ]] || install_tools
if ! cached; then
    fetch_source
    replace_reflect2
    patch_zero_values
    build_kubernetes
fi
cached || fail "binaries missing in ${BIN} after the build"
step "done: ${BIN}"
