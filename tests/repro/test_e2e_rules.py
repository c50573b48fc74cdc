"""The end-to-end tests' pass/fail/xfail rules, checked on CPU with fabricated runs (they gate nothing else)."""

import pytest

from mmclust.repro.references import ReferenceCell
from tests.e2e.conftest import check_claim, check_verdict

CELL = ReferenceCell(paper="toy", table="1", method="kmeans", variant="full", dataset="synthetic", protocol="paired",
                     metric="acc", value=0.78)


def _got(values, failed=0):
    return {"rows": [{"metrics": {"acc": v}} for v in values], "failed": failed}


def test_only_reproduced_passes():
    check_verdict(CELL, _got([0.780, 0.785, 0.775, 0.782, 0.779]), "toy")  # reproduced: returns


@pytest.mark.parametrize("values,failed", [([0.60, 0.61, 0.59], 0), ([0.78, 0.78, 0.78], 7)])
def test_below_and_unstable_fail(values, failed):
    with pytest.raises(pytest.fail.Exception):
        check_verdict(CELL, _got(values, failed), "toy")


@pytest.mark.parametrize("values", [[0.95, 0.96, 0.94], [0.62, 0.78, 0.94]])
def test_above_and_inconclusive_are_xfail(values):
    with pytest.raises(pytest.xfail.Exception):
        check_verdict(CELL, _got(values), "toy")


def test_claim_rules():
    check_claim("holds", "toy")
    for outcome in ("fails", "unstable"):
        with pytest.raises(pytest.fail.Exception):
            check_claim(outcome, "toy")
    for outcome in ("level", "inconclusive"):
        with pytest.raises(pytest.xfail.Exception):
            check_claim(outcome, "toy")
