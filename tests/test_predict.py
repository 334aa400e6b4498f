"""The preprocessing contract a model carries: a damaged or foreign one is a one-line error."""

import pytest

from supernas.errors import ConfigError
from supernas.predict import check_contract, check_fits

GOOD = {
    "channels": "L",
    "resize_shorter_side": 28,
    "center_crop": 28,
    "mean": [0.3],
    "std": [0.35],
    "classes": ["a", "b"],
}


def test_a_whole_contract_passes():
    assert check_contract(dict(GOOD), "p.json") == GOOD
    check_fits(GOOD, 1, 2, "p.json")
    check_fits(GOOD, "channels", "classes", "p.json")  # an ONNX graph's symbolic sizes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": "CMYK"}, "channels 'CMYK' is not L or RGB"),
        ({"mean": [0.5, 0.5, 0.5]}, r"mean \[0.5, 0.5, 0.5\] is not 1 number\(s\) for channels L"),
        ({"std": ["x"]}, "std"),
        ({"std": 0.3}, "std"),
        ({"center_crop": 0}, "center_crop 0 is not a size"),
        ({"resize_shorter_side": 2.5}, "resize_shorter_side 2.5 is not a size"),
        ({"classes": []}, r"classes \[\] is not a list of names"),
        ({"classes": "ab"}, "classes 'ab' is not a list of names"),
    ],
)
def test_a_damaged_contract_is_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        check_contract({**GOOD, **change}, "p.json")
    assert str(error.value).startswith("p.json: ") and "\n" not in str(error.value)


def test_a_contract_of_another_model_is_refused():
    with pytest.raises(ConfigError, match="channels L give 1 channel\\(s\\), the model takes 3"):
        check_fits(GOOD, 3, 2, "p.json")
    with pytest.raises(ConfigError, match="the preprocessing names 2 classes, the model has 10"):
        check_fits(GOOD, 1, 10, "p.json")
