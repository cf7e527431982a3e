"""The decision-accuracy suite (``python -m loadtests.decisions``), reduced to three scenarios with the
comparative judges: the same model, noisy but healthy, is promoted; 5% errors and a 15% accuracy loss are
rolled back. Each scenario runs in a namespace of its own with Locust, feedback and the operator."""

from __future__ import annotations

import pytest

from loadtests import decisions
from localcluster import services as local_services

EXPECTED = {"noisy-healthy": decisions.PROMOTED, "errors-5": decisions.ROLLED_BACK,
            "accuracy-15": decisions.ROLLED_BACK}


@pytest.mark.timeout(420)
def test_comparative_judges_decide_as_expected(dataplane: local_services.Services,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = decisions.parse_args(["--judges", "compare", "--scenarios", ",".join(EXPECTED), "--repeat-noisy", "0"])
    summary = decisions.run(args.settings, args.judge_sets, args.keys, args.repeat_noisy)
    print(decisions.render(summary))
    printed = capsys.readouterr().out
    print(printed)  # shown when the test fails
    results = {r.case.key: r for r in summary.results}
    assert set(results) == set(EXPECTED), printed
    for key, expected in EXPECTED.items():
        result = results[key]
        assert not result.error, f"{key}: {result.error}"
        assert result.decision == expected, f"{key}: {result.decision}, expected {expected}: {result.message}"
        assert result.time_s is not None and result.rows > 0, result
    # The summary as printed: the confusion matrix, rows expected, columns decided.
    assert "Confusion matrix, compare judges (3/3 as expected)" in printed
    assert "expected \\ decided" in printed
    assert [line.split()[-3:] for line in printed.splitlines() if line.strip().startswith("expected ")
            and line.split()[-1].isdigit()] == [["1", "0", "0"], ["0", "2", "0"]], printed
