import pytest

from probe.errors import OptionError
from probe.options import Option, parse_assignments, resolve_options

OPTS = (
    Option("width", float, 1.0, "width multiplier", minimum=0.05, maximum=4.0),
    Option("depth", int, 3, "blocks", choices=(2, 3, 4)),
    Option("bn", bool, False),
    Option("name", str, "x"),
    Option("shifts", tuple, (1, 2), item_type=int, minimum=0),
)


def test_defaults_and_parsing_from_strings():
    got = resolve_options(OPTS, {"width": "0.5", "depth": "4", "bn": "yes", "shifts": "0,3,5"},
                          "arch vgg")
    assert got == {"width": 0.5, "depth": 4, "bn": True, "name": "x", "shifts": (0, 3, 5)}
    assert resolve_options(OPTS, {}, "arch vgg")["shifts"] == (1, 2)


@pytest.mark.parametrize(("given", "message"), [
    ({"widht": 1}, "arch vgg has no option 'widht'; known options: bn, depth, name, shifts, width"),
    ({"width": "wide"}, "arch vgg.width must be float, got 'wide'"),
    ({"width": 9}, "arch vgg.width must be <= 4.0, got 9.0"),
    ({"depth": 5}, "arch vgg.depth must be one of [2, 3, 4], got 5"),
    ({"bn": "maybe"}, "arch vgg.bn must be bool, got 'maybe'"),
    ({"depth": True}, "arch vgg.depth must be int, got True"),
    ({"shifts": "1,-2"}, "arch vgg.shifts must be >= 0, got -2"),
])
def test_errors_state_rule_and_value(given, message):
    with pytest.raises(OptionError) as info:
        resolve_options(OPTS, given, "arch vgg")
    assert str(info.value) == message


def test_int_accepts_integral_float_and_float_accepts_int():
    got = resolve_options(OPTS, {"depth": 2.0, "width": 2}, "a")
    assert got["depth"] == 2 and isinstance(got["depth"], int)
    assert got["width"] == 2.0 and isinstance(got["width"], float)


def test_parse_assignments_groups_by_owner():
    assert parse_assignments(["arch.width=0.5", "dissection.quantile=0.01", "arch.bn=true"]) == {
        "arch": {"width": "0.5", "bn": "true"}, "dissection": {"quantile": "0.01"}}
    with pytest.raises(OptionError, match=r"OWNER\.OPTION=VALUE"):
        parse_assignments(["width=0.5"])


def test_bad_declarations_are_type_errors():
    with pytest.raises(TypeError):
        Option("x", list, [])
    with pytest.raises(TypeError):
        Option("x", tuple, ())
