"""The flags' value types (all in djsmile.argtypes): a bad value is a one-line usage error (exit 64) in the flag's
words."""

from __future__ import annotations

import pytest

from djsmile.cli import main
from djsmile.errors import EX_USAGE


@pytest.mark.parametrize("argv, words", [
    (["calibrate", "--seconds", "0.1"], "'0.1' must be between 0.5 and 600 seconds"),
    (["calibrate", "--seconds", "soon"], "'soon' is not a number of seconds"),
    (["bench", "--pace", "0"], "'0': give frames per second, e.g. 30 or 75"),
    (["bench", "--pace", "inf"], "'inf': give frames per second, e.g. 30 or 75"),
    (["bench", "--threads", ","], "',': give thread counts like 1 or 1,4"),
    (["bench", "--threads", "1,0"], "'0' must be at least 1"),
    (["bench", "--modes", "track,fast"], "'track,fast': modes are full, track, async (comma-separated)"),
    (["train", "--label-smoothing", "0.5"], "expected a number 0 <= E < 0.5, got '0.5'"),
    (["train", "--template", "0.3,0.4"], "--template"),
])
def test_a_bad_flag_value_is_a_usage_error_in_the_flags_words(argv, words, capsys):
    assert main(argv) == EX_USAGE
    err = capsys.readouterr().err
    assert words in err, err


def test_good_values_parse():
    from djsmile.commands import bench, calibrate
    assert calibrate.positive_seconds("2.5") == 2.5
    assert bench._positive_float("75") == 75.0
    assert bench._int_list(" 4, 1,4") == [4, 1]          # repeats dropped, order kept
    assert bench._mode_list("track,full,track") == ["track", "full"]
