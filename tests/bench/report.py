"""Reads the oha, wrk and h2load outputs of sidecar.sh (every round) and prints the results table
(Markdown): medians over the rounds, then snug-sidecar's ratios to nginx-proxy, median and range
over the rounds (each ratio taken within one round, where both paths saw the same machine)."""
import json
import os
import re
import statistics
import sys

work, rounds = sys.argv[1], int(sys.argv[2])
snug_idle, snug_held, nginx_idle, nginx_held, snug_after = map(int, sys.argv[3:8])
order = ["direct", "snug-sidecar", "nginx-proxy", "haproxy-tcp"]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
ROUNDS = range(1, rounds + 1)


def read(name):
    with open(os.path.join(work, name)) as f:
        return f.read()


def fixed_rate(name, r):
    """Achieved req/s, p50 and p99 in ms, from oha's JSON output."""
    result = json.loads(read(f"rate-{name}-{r}.json"))
    p = result["latencyPercentiles"]
    return result["summary"]["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3


def rps(text):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))


def h2(text):
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    return rate, float(mean.group(1)) * unit[mean.group(2)]


rate = {(n, r): fixed_rate(n, r) for n in order for r in ROUNDS}
maxes = {(n, r): rps(read(f"max-{n}-{r}.txt")) for n in order for r in ROUNDS}
h2s = {(n, r): h2(read(f"h2-{n}-{r}.txt")) for n in order for r in ROUNDS}
# Latency added over direct, in µs, within each round.
added = {(n, r): ((rate[n, r][1] - rate["direct", r][1]) * 1000, (rate[n, r][2] - rate["direct", r][2]) * 1000)
         for n in order for r in ROUNDS}


def median(values):
    return statistics.median(list(values))


print(f"\nMedians over {rounds} alternated rounds.\n")
print("| path | req/s at fixed rate | p50 ms | p99 ms | added p50 µs | added p99 µs | max req/s (HTTP/1.1) | h2load req/s | h2 mean ms |")
print("|---|---|---|---|---|---|---|---|---|")
for n in order:
    reached, p50, p99 = (median(rate[n, r][i] for r in ROUNDS) for i in range(3))
    add50 = "—" if n == "direct" else f"{median(added[n, r][0] for r in ROUNDS):.0f}"
    add99 = "—" if n == "direct" else f"{median(added[n, r][1] for r in ROUNDS):.0f}"
    top = median(maxes[n, r] for r in ROUNDS)
    h2rate = median(h2s[n, r][0] for r in ROUNDS)
    h2mean = median(h2s[n, r][1] for r in ROUNDS)
    print(f"| {n} | {reached:.0f} | {p50:.3f} | {p99:.3f} | {add50} | {add99} | {top:.0f} | {h2rate:.0f} | {h2mean:.3f} |")


def ratios(label, values):
    values = sorted(values)
    shown = ", ".join(f"{v:.2f}" for v in values)
    print(f"  {label}: median {statistics.median(values):.2f}× (rounds: {shown})")


def of_medians(i):
    return median(added["snug-sidecar", r][i] for r in ROUNDS) / median(added["nginx-proxy", r][i] for r in ROUNDS)


print(f"\nsnug-sidecar / nginx-proxy, ratio of the medians: added p50 {of_medians(0):.2f}×, added p99 {of_medians(1):.2f}×, "
      f"max req/s {median(maxes['snug-sidecar', r] for r in ROUNDS) / median(maxes['nginx-proxy', r] for r in ROUNDS):.2f}×")
print("snug-sidecar / nginx-proxy, per round:")
ratios("added p50", (added["snug-sidecar", r][0] / added["nginx-proxy", r][0] for r in ROUNDS))
ratios("added p99", (added["snug-sidecar", r][1] / added["nginx-proxy", r][1] for r in ROUNDS))
ratios("max req/s", (maxes["snug-sidecar", r] / maxes["nginx-proxy", r] for r in ROUNDS))
ratios("h2load req/s", (h2s["snug-sidecar", r][0] / h2s["nginx-proxy", r][0] for r in ROUNDS))
print(f"\nRSS snug-sidecar: idle {snug_idle / 1024:.1f} MiB, 1,000 open connections {snug_held / 1024:.1f} MiB")
print(f"RSS snug-sidecar after all the load tests: {snug_after / 1024:.1f} MiB")
print(f"RSS nginx-proxy (master + workers): idle {nginx_idle / 1024:.1f} MiB, 1,000 open connections {nginx_held / 1024:.1f} MiB")
