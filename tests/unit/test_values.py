from datetime import datetime, timezone

import pytest

from sources.values import BadValue, as_list, to_int, to_time

UTC = timezone.utc


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None), ("", None), (0, 0), (1304902, 1304902), ("1304902", 1304902),
        ("9223372036854775807", 9223372036854775807), (12.0, 12), (" 42 ", 42),
    ],
)
def test_to_int_accepts_numbers_and_int64_strings(value, expected):
    assert to_int(value) == expected


@pytest.mark.parametrize("value", ["12MB", "1.5", True, [1], {"a": 1}, 1.5])
def test_to_int_refuses_what_is_not_an_integer(value):
    with pytest.raises(BadValue):
        to_int(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.1Z", datetime(2024, 1, 2, 3, 4, 5, 100000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123456789Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T03:04:05.999999999Z", datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)),
        ("2024-01-02T12:04:05+09:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (1704164645, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (1704164645123, datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        ("1704164645123", datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        (1704164645.5, datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        (None, None),
    ],
)
def test_to_time_reads_rfc3339_epoch_seconds_and_milliseconds(value, expected):
    assert to_time(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-02T03:04:05Z", "02/01/2024", True])
def test_to_time_refuses_unknown_formats(value):
    with pytest.raises(BadValue):
        to_time(value)


def test_nanoseconds_are_cut_not_rounded():
    assert to_time("2024-01-02T03:04:05.0000009Z").microsecond == 0


@pytest.mark.parametrize(
    "value, expected",
    [(None, []), ("a", ["a"]), ("a, b", ["a", "b"]), ('["a","b"]', ["a", "b"]), (["a"], ["a"])],
)
def test_as_list(value, expected):
    assert as_list(value) == expected
