#!/usr/bin/env bash
# Starts a throw-away Kubernetes 1.20 control plane on 127.0.0.1 in DIR:
#
#   up.sh DIR            etcd + kube-apiserver + kube-controller-manager, free ports,
#                        a fresh PKI, DIR/kubeconfig (admin, client certificate)
#   down.sh DIR          stops everything up.sh started (by the PIDs in DIR/pids)
#
# DIR/logs/<process>.log keeps each process's output. With SNUG_CLUSTER_OWNER=PID a watchdog
# runs down.sh as soon as that process is gone, so a test killed outright still cleans up.
# The binaries come from build.sh (run it first; it does nothing when they are cached).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SNUG_CLUSTER_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/snug-cluster/kubernetes-v1.20.2}
BIN=${CACHE}/bin

step() { printf '[snug cluster] %s\n' "$*" >&2; }
fail() {
    printf '[snug cluster] ERROR: %s\n' "$*" >&2
    "${HERE}/down.sh" "${DIR}" >&2 || true
    exit 1
}

[[ $# == 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x ${BIN}/${b} ]] || fail "${BIN}/${b} missing: run ${HERE}/build.sh first"
done
[[ ! -e ${DIR}/pids ]] || fail "${DIR} already holds a cluster (run down.sh ${DIR} first)"
mkdir -p "${DIR}/pki" "${DIR}/logs" "${DIR}/pids" "${DIR}/etcd"

# A port nobody listens on; random so that parallel clusters rarely race for the same one, and
# below the kernel's ephemeral range, so that no test's outgoing connection or bind to port 0
# takes it between this check and the server's bind.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
(( EPHEMERAL_LOW > 21000 )) || EPHEMERAL_LOW=32768
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % (EPHEMERAL_LOW - 20000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
            echo "${p}"
            return
        fi
    done
    fail "no free port found"
}

# --- PKI ----------------------------------------------------------------------------------
pki=${DIR}/pki
ec_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ca() { # name CN
    ec_key "${pki}/$1.key"
    openssl req -x509 -new -key "${pki}/$1.key" -subj "/CN=$2" -days 2 -out "${pki}/$1.crt" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # ca name subject extensions
    ec_key "${pki}/$2.key"
    openssl req -new -key "${pki}/$2.key" -subj "$3" |
        openssl x509 -req -CA "${pki}/$1.crt" -CAkey "${pki}/$1.key" -CAcreateserial -days 2 \
            -extfile <(printf '%s\n' "$4") -out "${pki}/$2.crt" 2>/dev/null
}
step "PKI in ${pki}"
ca ca snug-e2e-ca
ca front-proxy-ca snug-e2e-front-proxy-ca
leaf ca apiserver /CN=kube-apiserver "$(printf '%s\n' \
    'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' \
    'extendedKeyUsage=serverAuth')"
leaf ca admin '/O=system:masters/CN=snug-e2e-admin' 'extendedKeyUsage=clientAuth'
leaf front-proxy-ca front-proxy-client /CN=front-proxy-client 'extendedKeyUsage=clientAuth'
ec_key "${pki}/sa.key"
openssl ec -in "${pki}/sa.key" -pubout -out "${pki}/sa.pub" 2>/dev/null

# --- processes ----------------------------------------------------------------------------
# Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces).
start_time() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; s=${s##*) }; set -- $s; echo "${20}"; }
start() { # name command...
    local name=$1
    shift
    "$@" >"${DIR}/logs/${name}.log" 2>&1 &
    # PID and start time: down.sh must never signal a recycled PID.
    echo "$! $(start_time $!)" >"${DIR}/pids/${name}.pid"
}

ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
while [[ ${ETCD_PEER_PORT} == "${ETCD_PORT}" || ${API_PORT} == "${ETCD_PORT}" || ${API_PORT} == "${ETCD_PEER_PORT}" ]]; do
    API_PORT=$(free_port)
    ETCD_PEER_PORT=$(free_port)
done
cat >"${DIR}/env" <<EOF
ETCD_PORT=${ETCD_PORT}
API_PORT=${API_PORT}
SERVER=https://127.0.0.1:${API_PORT}
EOF

if [[ -n ${SNUG_CLUSTER_OWNER:-} ]]; then
    # Outlives a test process killed with SIGKILL; stops the cluster when the owner is gone.
    setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null && [[ -e "$2/pids" ]]; do sleep 1; done; "$3/down.sh" "$2"' \
        watchdog "${SNUG_CLUSTER_OWNER}" "${DIR}" "${HERE}" >"${DIR}/logs/watchdog.log" 2>&1 &
fi

step "etcd on 127.0.0.1:${ETCD_PORT}"
start etcd "${BIN}/etcd" --name snug-e2e --data-dir "${DIR}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "snug-e2e=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --unsafe-no-fsync --log-level warn

step "kube-apiserver on https://127.0.0.1:${API_PORT}"
start kube-apiserver "${BIN}/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "${API_PORT}" --insecure-port 0 \
    --tls-cert-file "${pki}/apiserver.crt" --tls-private-key-file "${pki}/apiserver.key" \
    --client-ca-file "${pki}/ca.crt" \
    --authorization-mode RBAC \
    --enable-admission-plugins MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "${pki}/sa.pub" \
    --service-account-signing-key-file "${pki}/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --endpoint-reconciler-type none \
    --requestheader-client-ca-file "${pki}/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "${pki}/front-proxy-client.crt" \
    --proxy-client-key-file "${pki}/front-proxy-client.key" \
    --allow-privileged --profiling=false --v 1

cat >"${DIR}/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: snug-e2e
  cluster:
    server: https://127.0.0.1:${API_PORT}
    certificate-authority: ${pki}/ca.crt
users:
- name: admin
  user:
    client-certificate: ${pki}/admin.crt
    client-key: ${pki}/admin.key
contexts:
- name: snug-e2e
  context: {cluster: snug-e2e, user: admin}
current-context: snug-e2e
EOF

kubectl() { "${BIN}/kubectl" --kubeconfig "${DIR}/kubeconfig" "$@"; }
alive() { local pid _; read -r pid _ <"${DIR}/pids/$1.pid" && kill -0 "${pid}" 2>/dev/null; }
for i in $(seq 240); do
    kubectl get --raw /readyz >/dev/null 2>&1 && break
    alive kube-apiserver ||
        fail "kube-apiserver exited; see ${DIR}/logs/kube-apiserver.log: $(tail -n 5 "${DIR}/logs/kube-apiserver.log")"
    [[ ${i} != 240 ]] || fail "kube-apiserver not ready after 60 s; see ${DIR}/logs/kube-apiserver.log"
    sleep 0.25
done

# The controller-manager acts as cluster admin: this cluster exists for one test run.
step "kube-controller-manager"
start kube-controller-manager "${BIN}/kube-controller-manager" \
    --kubeconfig "${DIR}/kubeconfig" \
    --leader-elect=false --port 0 --secure-port 0 \
    --service-account-private-key-file "${pki}/sa.key" \
    --root-ca-file "${pki}/ca.crt" \
    --use-service-account-credentials=false \
    --v 1

# Ready when the service-account controllers work (pods are refused without them).
for i in $(seq 240); do
    kubectl -n default get serviceaccount default >/dev/null 2>&1 && break
    alive kube-controller-manager ||
        fail "kube-controller-manager exited; see ${DIR}/logs/kube-controller-manager.log"
    [[ ${i} != 240 ]] || fail "no default service account after 60 s; see ${DIR}/logs/kube-controller-manager.log"
    sleep 0.25
done
step "ready: export KUBECONFIG=${DIR}/kubeconfig"
echo "${DIR}/kubeconfig"
