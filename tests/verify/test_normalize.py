"""String normalisation and the sympy-free fast path."""

from fractions import Fraction

import pytest

from libra.verify.compare import quick_verdict
from libra.verify.normalize import as_number, normalize


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (r"\text{Evelyn}", "Evelyn"),
        (r"\textbf{(B)}", "B"),
        ("(C) 12", "C"),
        ("B.", "B"),
        ("x = 5", "5"),
        (r"\theta = 3", "3"),
        (r"x \in [2, 5)", "[2,5)"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\tfrac12", r"\frac{1}{2}"),
        (r"\frac1{2}", r"\frac{1}{2}"),
        (r"\sqrt2", r"\sqrt{2}"),
        ("1,000", "1000"),
        ("1{,}000", "1000"),
        (r"900,\!000,\!000", "900000000"),
        (r"90^\circ", "90"),
        (r"48^{\circ}", "48"),
        (r"50\%", "50"),
        (r"\$6", "6"),
        (r"12 \text{ cm}", "12"),
        (r"100\text{ square units}", "100"),
        (r"5\text{ cm}^2", "5"),
        (r"12^{\mathrm{th}} \text{ grade}", "12"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
        (r"\pi r^2", r"\pi r^2"),  # the space between two letters stays
        ("12π", r"12\pi"),
        ("3.", "3"),
        (".50", "0.5"),
        ("5.000", "5"),
        ("-0.0", "0"),
        (r"\{1, 2\}", "{1,2}"),
    ],
)
def test_normalize(raw, normal):
    assert normalize(raw) == normal


@pytest.mark.parametrize(
    ("normal", "value"),
    [("5", 5), ("-0.25", Fraction(-1, 4)), (r"\frac{3}{4}", Fraction(3, 4)), ("-7/2", Fraction(-7, 2)),
     (r"\frac{1}{0}", None), (r"\sqrt{2}", None), ("1" * 100, None)],
)
def test_as_number(normal, value):
    assert as_number(normal) == value


@pytest.mark.parametrize(
    ("pred", "gold", "verdict"),
    [
        ("1000", "1,000", True),
        (r"\frac12", "0.5", True),
        ("x=5", "5", True),
        ("EVELYN", r"\text{Evelyn}", True),
        ("(A)", "A", True),
        ("B", "A", False),
        ("4", "5", False),
        ("1/2", "2", False),
        ("0.3333", r"\frac{1}{3}", None),  # decimals are left to math-verify's rounding rules
        (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}", None),
    ],
)
def test_quick_verdict(pred, gold, verdict):
    assert quick_verdict(pred, gold) is verdict
