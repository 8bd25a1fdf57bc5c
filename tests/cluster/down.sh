#!/usr/bin/env bash
# Stops every process up.sh (and the test harness's fake kubelet) recorded in DIR/pids, by PID:
# SIGTERM, then SIGKILL after 5 s. A PID file holds "PID STARTTIME"; a process whose start time
# differs is a recycled PID and is left alone. Logs stay in DIR/logs. Safe to run twice.
set -uo pipefail

[[ $# == 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
[[ -d ${DIR}/pids ]] || exit 0

start_time() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; s=${s##*) }; set -- $s; echo "${20}"; }

pids=()
for f in "${DIR}"/pids/*.pid; do
    [[ -e ${f} ]] || continue
    read -r pid started <"${f}" || true
    [[ ${pid:-} =~ ^[0-9]+$ ]] || continue
    [[ -z ${started:-} || $(start_time "${pid}") == "${started}" ]] || continue
    kill -TERM "${pid}" 2>/dev/null && pids+=("${pid}")
done
for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "${pid}" 2>/dev/null && alive=1; done
    [[ ${alive} == 0 ]] && break
    sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "${pid}" 2>/dev/null; done
rm -rf "${DIR}/pids" "${DIR}/etcd"
printf '[snug cluster] stopped; logs in %s/logs\n' "${DIR}" >&2
