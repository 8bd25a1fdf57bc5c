"""Reads the wrk and h2load outputs of sidecar.sh and prints the results table (Markdown)."""
import os
import re
import sys

work, snug_idle, snug_held, nginx_idle, nginx_held, snug_after = sys.argv[1], *map(int, sys.argv[2:7])
order = ["direct", "snug-sidecar", "nginx-proxy", "haproxy-tcp"]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def read(name):
    with open(os.path.join(work, name)) as f:
        return f.read()


def percentile(text, p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * unit[m.group(2)]


def rps(text):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))


def h2(text):
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    return rate, float(mean.group(1)) * unit[mean.group(2)]


rate = {n: read(f"rate-{n}.txt") for n in order}
base50, base99 = percentile(rate["direct"], 50), percentile(rate["direct"], 99)
maxes = {n: rps(read(f"max-{n}.txt")) for n in order}
h2s = {n: h2(read(f"h2-{n}.txt")) for n in order}

print("\n| path | req/s at fixed rate | p50 ms | p99 ms | added p50 µs | added p99 µs | max req/s (HTTP/1.1) | vs nginx-proxy | h2load req/s | h2 mean ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in order:
    p50, p99 = percentile(rate[n], 50), percentile(rate[n], 99)
    added = "—" if n == "direct" else f"{(p50 - base50) * 1000:.0f}"
    added99 = "—" if n == "direct" else f"{(p99 - base99) * 1000:.0f}"
    ratio = maxes[n] / maxes["nginx-proxy"]
    print(f"| {n} | {rps(rate[n]):.0f} | {p50:.3f} | {p99:.3f} | {added} | {added99} | {maxes[n]:.0f} | {ratio:.2f} | {h2s[n][0]:.0f} | {h2s[n][1]:.3f} |")

print(f"\nRSS snug-sidecar: idle {snug_idle / 1024:.1f} MiB, 1,000 open connections {snug_held / 1024:.1f} MiB")
print(f"RSS snug-sidecar after all the load tests: {snug_after / 1024:.1f} MiB")
print(f"RSS nginx-proxy (master + workers): idle {nginx_idle / 1024:.1f} MiB, 1,000 open connections {nginx_held / 1024:.1f} MiB")
