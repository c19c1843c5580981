"""The judge-kind registry carries what differs between kinds, and what is derived from it agrees with the
kinds' templates and parsers."""
import pytest

import libra_kernels as lk
from libra.eval.verdict_confidence import CANDIDATES
from libra.judge import BUILTIN, KINDS, POINTWISE_KINDS, template_fields


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kinds_row_fields_are_what_its_template_reads(name):
    kind = KINDS[name]
    assert kind.template in BUILTIN
    assert template_fields(kind.template) == {"question", *kind.row_fields}


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_each_candidate_is_a_valid_verdict_with_a_distinct_outcome_set(name):
    kind = KINDS[name]
    outcomes = []
    for label in kind.candidates:
        verdict = kind.parse(f"[[{label}]]")
        assert verdict.valid, label
        outcomes.append(kind.outcome(verdict.value))
    assert set(outcomes) == set(kind.labels)  # every gold label can be reached by some candidate


def test_derived_tables_follow_the_registry():
    assert POINTWISE_KINDS == ("pointwise", "verification")
    assert set(CANDIDATES) == {"pointwise", "verification"}  # pairwise declares none
    assert [k.name for k in KINDS.values() if k.uses_threshold] == ["pointwise"]


def test_each_aggregation_declares_the_unit_its_loss_is_a_mean_over():
    assert {name: agg.unit for name, agg in lk.AGGREGATIONS.items()} == {
        "token-mean": "token", "seq-mean-token-mean": "sequence", "seq-mean-token-sum": "sequence",
        "seq-mean-token-sum-norm": "sequence"}
    assert lk.AGGS == tuple(lk.AGGREGATIONS)
