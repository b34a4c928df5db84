"""What edgesync_info makes of a host's /metrics: its users' requests a second
and their p99 between two reads (plugins/module_utils/edgesync_api.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))

import pytest
from edgesync_api import parse_metrics, quantile, summarise


def page(get_pages: int, fast: int, probes: int = 0) -> str:
    """A /metrics page as the API writes it: ``get_pages`` reads of a record, of
    which ``fast`` took under 1 ms and the rest under 5 ms; ``probes`` /readyz."""
    lines = [
        "# HELP edgesync_http_requests_total HTTP requests answered, by route, method and status",
        "# TYPE edgesync_http_requests_total counter",
        f'edgesync_http_requests_total{{method="GET",route="/v1/{{table}}/{{id}}",status="200"}}'
        f" {get_pages}.0",
        f'edgesync_http_requests_total{{method="GET",route="/readyz",status="200"}} {probes}.0',
    ]
    record = "/v1/{table}/{id}"
    for route, le, n in [(record, "0.001", fast), (record, "0.005", get_pages),
                         (record, "+Inf", get_pages), ("/readyz", "0.001", 0),
                         ("/readyz", "+Inf", probes)]:  # fmt: skip
        lines.append(
            f'edgesync_http_request_duration_seconds_bucket{{le="{le}",route="{route}"}} {n}.0'
        )
    lines.append('edgesync_rows{table="pages"} 17449.0')
    return "\n".join(lines) + "\n"


def test_a_page_reads_as_counts_and_buckets_per_route():
    sample = parse_metrics(page(10, 4, probes=3))
    assert sample["requests"] == {"/v1/{table}/{id}": 10.0, "/readyz": 3.0}
    assert sample["buckets"]["/v1/{table}/{id}"] == [(0.001, 4.0), (0.005, 10.0),
                                                     (float("inf"), 10.0)]  # fmt: skip


def test_the_rate_and_p99_are_of_users_requests_between_the_two_reads():
    first, second = parse_metrics(page(10, 4, probes=3)), parse_metrics(page(110, 4, probes=900))
    # 100 reads in 2 s, all between 1 and 5 ms; probes left out, however many
    got = summarise(first, second, 2.0)
    assert got["requests_per_s"] == 50.0
    assert got["p99_s"] == pytest.approx(0.001 + 0.004 * 0.99)


def test_no_request_between_the_reads_has_no_percentile():
    same = parse_metrics(page(10, 4))
    assert summarise(same, same, 1.0) == {"requests_per_s": 0.0, "p99_s": None}


def test_counters_that_went_back_give_no_rate():
    got = summarise(parse_metrics(page(10, 4)), parse_metrics(page(3, 1)), 1.0)
    assert got["requests_per_s"] is None and got["p99_s"] is None and "restarted" in got["note"]


def test_quantiles_are_estimated_as_prometheus_does():
    buckets = [(0.001, 50.0), (0.01, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == 0.001
    assert quantile(0.75, buckets) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(0.99, [(0.001, 0.0), (float("inf"), 10.0)]) == 0.001  # beyond the last bound
    assert quantile(0.99, [(0.001, 0.0), (float("inf"), 0.0)]) is None
