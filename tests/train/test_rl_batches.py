"""The RL passes' micro-batches and the response-only view the LM head gets, in both layouts."""
import pytest

from libra.train.grpo import Rollout
from libra.train.packing import batch_inputs
from libra.train.rl_batches import micro_batches, response_tokens


class _Batcher:
    """What ``response_tokens`` needs of a TrainSession: ``batch`` (rows -> tensors), here on CPU."""

    def batch(self, rows):
        return batch_inputs(rows or [[Rollout(0, [0], [], [], 0, False, False).example()]], pad_id=0)


ROLLOUTS = [Rollout(0, [5, 6, 7], [8, 9], [-0.1, -0.2], 0, False, False),
            Rollout(0, [5], [8, 9, 10], [-0.3, -0.4, -0.5], 0, False, False),
            Rollout(1, [4, 4], [11], [-0.6], 0, False, False)]


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_the_head_sees_exactly_the_response_tokens_in_rollout_order(packed):
    rt = response_tokens(_Batcher(), ROLLOUTS, packed)
    assert rt.targets.tolist() == [[8, 9, 8, 9, 10, 11]]
    assert rt.segments.tolist() == [[0, 0, 1, 1, 1, 2]]
    assert rt.inputs["input_ids"].shape == ((1, 12) if packed else (3, 5))
    # each gathered position holds the token that predicts the target: the input right before it
    flat_inputs = rt.inputs["input_ids"].reshape(-1)
    expected_prev = [7, 8, 5, 8, 9, 4]
    assert flat_inputs[rt.positions].tolist() == expected_prev
    hidden = flat_inputs.float().reshape(rt.inputs["input_ids"].shape)[..., None].expand(-1, -1, 2)
    assert rt.gather(hidden)[0, :, 0].tolist() == expected_prev
    values = rt.cat([r.engine_logp for r in ROLLOUTS])
    assert values.tolist() == [pytest.approx([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6])]
    assert [v.tolist() for v in rt.split(values)] == [pytest.approx(r.engine_logp) for r in ROLLOUTS]


def test_packed_rows_never_attend_across_rollouts():
    rt = response_tokens(_Batcher(), ROLLOUTS, packed=True)
    mask = rt.inputs["attention_mask"][0, 0]
    assert rt.inputs["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]]
    assert not mask[5:9, :5].any() and not mask[9:, :9].any() and mask[8, 5:9].all()


def test_an_idle_pass_has_one_masked_position():
    rt = response_tokens(_Batcher(), [], packed=True)
    assert rt.idle and rt.positions.tolist() == [0] and rt.cat([]).tolist() == [[0.0]] and rt.split(rt.cat([])) == []


def test_token_budget_bins_hold_at_most_the_budget():
    rollouts = [Rollout(0, [1] * p, [2] * r, [0.0] * r, 0, False, False)
                for p, r in [(3, 9), (2, 2), (5, 1), (4, 4), (1, 1), (6, 30)]]
    bins = micro_batches(rollouts, size=2, max_tokens=12)
    lengths = [[len(r.prompt_ids) + len(r.response_ids) for r in b] for b in bins]
    assert sum(map(len, bins)) == 6
    assert all(sum(b) <= 12 for b in lengths if len(b) > 1)
    assert [36] in lengths  # longer than the budget: a bin of its own
    assert sorted(map(sorted, lengths)) == [[2, 6], [4, 8], [12], [36]]  # first-fit decreasing
    assert [len(b) for b in micro_batches(rollouts, size=4)] == [4, 2]
    buckets = micro_batches(rollouts, size=2, max_tokens=12, packed=False)  # rows x longest <= 12
    widths = sorted(sorted(len(r.prompt_ids) + len(r.response_ids) for r in b) for b in buckets)
    assert widths == [[2], [4, 6], [8], [12], [36]]
