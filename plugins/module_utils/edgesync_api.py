"""Shared code of the edgesync modules: the host's own HTTP face, read on the host.

Where the API listens comes from its settings file (the api role writes it).
Ready or not is its /readyz. A rate needs two samples: /metrics is read twice,
``sample_s`` apart, and the requests counted between them (users' requests
only: probes and scrapes such as these are left out) give the requests per
second and the 99th percentile of their time, estimated from the histogram's
buckets as Prometheus' histogram_quantile does (linear within a bucket). With
no request in between there is no percentile to tell. An API that restarted
between the two samples, or runs several workers (each answers /metrics for
itself), gives no rate either.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import tomllib
import urllib.error
import urllib.request

REQUESTS = "edgesync_http_requests_total"
BUCKETS = "edgesync_http_request_duration_seconds_bucket"
# Routes that are not users' requests: the probes, and the scrapes themselves.
PROBES = ("/healthz", "/readyz", "/metrics")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
# No proxy from the environment: the API is on this host.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def address_of(settings_path: str) -> tuple[str, int]:
    """(host, port) at which this host reaches its own API, from its settings."""
    with open(settings_path, "rb") as fh:
        listen = tomllib.load(fh).get("http", {}).get("listen", "127.0.0.1:8080")
    host, _, port = str(listen).rpartition(":")
    host = host.strip("[]")
    return _WILDCARD.get(host, host), int(port)


def parse_metrics(text: str) -> dict:
    """The request counts per route and the latency buckets per route (each a
    list of (upper bound, cumulative count)) of a /metrics page."""
    requests: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or m.group(1) not in (REQUESTS, BUCKETS):
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        value = float(m.group(3))
        route = labels.get("route", "")
        if m.group(1) == REQUESTS:
            requests[route] = requests.get(route, 0.0) + value
        else:
            le = float(labels.get("le", "+Inf"))
            buckets.setdefault(route, {})[le] = value
    return {"requests": requests,
            "buckets": {r: sorted(b.items()) for r, b in buckets.items()}}  # fmt: skip


def _users(sample: dict) -> tuple[float, dict[float, float]]:
    """Users' requests of a sample: their count and their buckets summed over routes."""
    count = sum(n for route, n in sample["requests"].items() if route not in PROBES)
    summed: dict[float, float] = {}
    for route, pairs in sample["buckets"].items():
        if route not in PROBES:
            for le, n in pairs:
                summed[le] = summed.get(le, 0.0) + n
    return count, summed


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative buckets [(upper bound, count)], as
    Prometheus' histogram_quantile estimates it; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower  # beyond the largest finite bound: that bound
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def summarise(first: dict, second: dict, seconds: float) -> dict:
    """Users' requests per second and their p99 between two samples."""
    n1, b1 = _users(first)
    n2, b2 = _users(second)
    delta = {le: b2.get(le, 0.0) - b1.get(le, 0.0) for le in b2}
    if n2 < n1 or any(v < 0 for v in delta.values()) or seconds <= 0:
        return {"requests_per_s": None, "p99_s": None,
                "note": "the counters went back: restarted, or several workers"}  # fmt: skip
    return {"requests_per_s": round((n2 - n1) / seconds, 2),
            "p99_s": quantile(0.99, sorted(delta.items()))}  # fmt: skip


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def state(settings_path: str, sample_s: float = 1.0, timeout: float = 5.0) -> dict:
    """The API of this host: up (it answers), ready (/readyz is 200), why not,
    and its users' requests per second and p99 over ``sample_s`` seconds
    (0: one look, no rate)."""
    out = {"up": False, "ready": False, "reason": None, "address": None,
           "requests_per_s": None, "p99_s": None, "sample_s": sample_s}  # fmt: skip
    try:
        host, port = address_of(settings_path)
    except FileNotFoundError:
        out["reason"] = f"not installed ({settings_path} is missing)"
        return out
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        out["reason"] = f"its settings cannot be read: {exc}"
        return out
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    out["address"] = base.removeprefix("http://")
    try:
        status, body = _get(base + "/readyz", timeout)
        out["up"] = True
        out["ready"] = status == 200
        if status != 200:
            out["reason"] = _detail(status, body)
        first = parse_metrics(_get(base + "/metrics", timeout)[1].decode())
        if sample_s > 0:
            began = time.monotonic()
            time.sleep(sample_s)
            second = parse_metrics(_get(base + "/metrics", timeout)[1].decode())
            out.update(summarise(first, second, time.monotonic() - began))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, not HTTP
        out["up"] = out["ready"] = False
        reason = getattr(exc, "reason", exc)
        out["reason"] = f"no answer on {out['address']}: {reason}"
    return out


def _detail(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"/readyz answers {status}" + (f": {str(detail)[:200]}" if detail else "")
