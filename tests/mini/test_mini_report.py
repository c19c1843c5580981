"""The paired bootstrap behind the report's "holds" column."""
from libra.mini.report import _verdict, paired_difference


def test_paired_difference_interval():
    same = {str(i): i % 3 == 0 for i in range(200)}
    assert paired_difference(same, same) == (0.0, 0.0)
    better = {k: True for k in same}
    low, high = paired_difference(better, same)
    assert 0 < low < 2 / 3 < high < 1
    slightly = dict(same, **{"1": True})  # one judgment out of 200: no evidence either way
    low, high = paired_difference(slightly, same)
    assert low <= 0 < high
    assert _verdict(0.005, low) == "yes, within noise" and _verdict(0.3, 0.2) == "yes" and _verdict(-0.1, -0.2) == "no"
