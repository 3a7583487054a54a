"""The team-load benchmark (bench/team.py): its workload and maths, and a short real run.

The full run (`python -m bench team`, several minutes) is behind BENCH_TEAM_FULL=1."""

from __future__ import annotations

import os

import pytest

from bench import team, team_report


def test_arrivals_are_a_seeded_poisson_team():
    first, again = team.arrivals(8, 400, seed=3), team.arrivals(8, 400, seed=3)
    assert first == again and first != team.arrivals(8, 400, seed=4)
    rate = len(first) / first[-1].at * 60  # requests per minute
    assert 6.5 < rate < 9.5  # 8 users at one a minute
    assert 0.2 < sum(a.complex for a in first) / len(first) < 0.4
    assert all(150 <= a.answer_tokens <= 400 for a in first)


def test_summary_and_targets():
    results = [team.Result(1.0, 10.0, "local", 10, 200), team.Result(2.0, 20.0, "cloud", 10, 100),
               team.Result(None, 1.0, "error", 10, 100)]
    row = team.summarize(results, (1e-6, 2e-6))
    assert (row["errors"], row["local_share"], row["ttft_p50"]) == (1, 1 / 3, 1.5)
    assert row["local_token_share"] == pytest.approx(0.5)
    assert row["cloud_cost_per_1k"] == pytest.approx(1000 * (10e-6 + 200e-6) / 3)
    rows = [{**row, "configuration": name, "users": users, "ttft_p95": p95}
            for name, users, p95 in (("gateway", 8, 2.0), ("local-first", 8, 20.0), ("gateway", 1, 2.0), ("local-first", 1, 2.0))]
    met = {name: ok for name, _, ok in team_report.targets(rows)}
    assert met["8 users: TTFT p95 <= 1/5 of local-first's, >= 50% local"] is False  # 33% local
    assert "| gateway | 8 | 3 | 1 |" in team_report.table(rows)


def test_results_md_keeps_the_rest_of_the_file(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nearlier content\n")
    team_report.write_section(path, f"{team_report.BEGIN}\nfirst\n{team_report.END}")
    team_report.write_section(path, f"{team_report.BEGIN}\nsecond\n{team_report.END}")
    text = path.read_text()
    assert text.startswith("# Results\n\nearlier content\n") and "second" in text and "first" not in text


def test_a_short_real_run_routes_and_measures():
    results = team.run(users=(4,), min_requests=6, speedup=40, configurations=("gateway",), progress=lambda _: None)
    (row,) = results["rows"]
    assert row["requests"] == 40 and row["errors"] == 0, row["error_reasons"]
    assert row["ttft_p50"] is not None and row["ttft_p50"] > 0
    assert 0 < row["local_share"] <= 1


@pytest.mark.skipif(os.environ.get("BENCH_TEAM_FULL") != "1", reason="the full team benchmark takes minutes: BENCH_TEAM_FULL=1")
def test_full_team_benchmark():
    results = team.run()
    assert {r["users"] for r in results["rows"]} == set(team.USERS)
    assert all(r["errors"] == 0 for r in results["rows"]), [r["error_reasons"] for r in results["rows"]]


def test_the_queueing_model_spills_only_under_load_and_bounds_the_local_share():
    from bench import team_model

    simple = sum(not a.complex for a in team.arrivals(8, 80, 1)) / 80
    first = team_model.simulate(8, 80, 1, None)  # local-first: every simple request local
    assert first.local_share == simple
    fast = team_model.simulate(8, 80, 1, 5.0, tps=1000.0)  # answers in well under a second: never busy
    assert fast.local_share == simple and fast.ttft_p95 == team_model.CLOUD_TTFT  # the slowest are the cloud's
    slow = team_model.simulate(8, 80, 1, 5.0)  # 12 tokens/s: busy, so some simple requests spill
    assert slow.local_share < simple and slow.cost_share > first.cost_share
    assert team_model.slots_per_minute(12.0) == pytest.approx(2 * 60 / (0.2 + 275 / 12))
