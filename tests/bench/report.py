"""Reads the oha, wrk and h2load outputs of sidecar.sh and prints the results table (Markdown)."""
import json
import os
import re
import sys

work, snug_idle, snug_held, nginx_idle, nginx_held, snug_after = sys.argv[1], *map(int, sys.argv[2:7])
order = ["direct", "snug-sidecar", "nginx-proxy", "haproxy-tcp"]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def read(name):
    with open(os.path.join(work, name)) as f:
        return f.read()


def fixed_rate(name):
    """Achieved req/s, p50 and p99 in ms, from oha's JSON output."""
    with open(os.path.join(work, f"rate-{name}.json")) as f:
        result = json.load(f)
    p = result["latencyPercentiles"]
    return result["summary"]["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3


def rps(text):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))


def h2(text):
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    return rate, float(mean.group(1)) * unit[mean.group(2)]


rate = {n: fixed_rate(n) for n in order}
_, base50, base99 = rate["direct"]
maxes = {n: rps(read(f"max-{n}.txt")) for n in order}
h2s = {n: h2(read(f"h2-{n}.txt")) for n in order}

print("\n| path | req/s at fixed rate | p50 ms | p99 ms | added p50 µs | added p99 µs | max req/s (HTTP/1.1) | vs nginx-proxy | h2load req/s | h2 mean ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in order:
    reached, p50, p99 = rate[n]
    added = "—" if n == "direct" else f"{(p50 - base50) * 1000:.0f}"
    added99 = "—" if n == "direct" else f"{(p99 - base99) * 1000:.0f}"
    ratio = maxes[n] / maxes["nginx-proxy"]
    print(f"| {n} | {reached:.0f} | {p50:.3f} | {p99:.3f} | {added} | {added99} | {maxes[n]:.0f} | {ratio:.2f} | {h2s[n][0]:.0f} | {h2s[n][1]:.3f} |")

added = {n: (rate[n][1] - base50, rate[n][2] - base99) for n in order}
print(f"\nsnug-sidecar / nginx-proxy: added p50 {added['snug-sidecar'][0] / added['nginx-proxy'][0]:.2f}×, "
      f"added p99 {added['snug-sidecar'][1] / added['nginx-proxy'][1]:.2f}×, "
      f"max req/s {maxes['snug-sidecar'] / maxes['nginx-proxy']:.2f}×, h2load {h2s['snug-sidecar'][0] / h2s['nginx-proxy'][0]:.2f}×")
print(f"\nRSS snug-sidecar: idle {snug_idle / 1024:.1f} MiB, 1,000 open connections {snug_held / 1024:.1f} MiB")
print(f"RSS snug-sidecar after all the load tests: {snug_after / 1024:.1f} MiB")
print(f"RSS nginx-proxy (master + workers): idle {nginx_idle / 1024:.1f} MiB, 1,000 open connections {nginx_held / 1024:.1f} MiB")
