"""The boards' logs without a master: a batch's bytes as lines, and the API's since/limit as the service reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pifleet.devices.logs import lost_line, parse_limit, parse_since, split
from pifleet.errors import InvalidError


@pytest.mark.parametrize(
    ("payload", "lines"),
    [
        (b"", []),
        (b"\n", [""]),
        (b"a\nb\n", ["a", "b"]),
        (b"a\r\n\nb", ["a", "", "b"]),  # an empty print stays; a cut last line ends where the batch ends
        (b"caf\xc3\xa9 \xff\n", ["caf\u00e9 \ufffd"]),
        (b"nul\x00here\n", ["nul\ufffdhere"]),
        (b"\xe2\x82", ["\ufffd"]),  # a character cut by the batch's end
    ],
)
def test_a_batch_becomes_lines(payload, lines):
    assert split(payload) == lines


def test_the_lost_line_says_how_much():
    assert lost_line(312) == "… 312 bytes of this board's log were lost (its buffer was full)"


def test_since_and_limit():
    assert parse_since(None) is None and parse_since("") is None
    assert parse_since("2026-12-02T14:00:00+01:00") == datetime(2026, 12, 2, 13, tzinfo=UTC)
    assert parse_since("2026-12-02T14:00:00 01:00") == datetime(2026, 12, 2, 13, tzinfo=UTC)  # an unescaped "+"
    assert parse_since("2026-12-02T23:59:60Z") == datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)  # leap second
    assert parse_since("0001-01-01T00:00:00+05:00") == datetime.min.replace(tzinfo=UTC)
    assert parse_limit(None) == 200 and parse_limit("10000") == 10_000
    for bad, field in (("yesterday", "since"), ("12:00", "since")):
        with pytest.raises(InvalidError) as e:
            parse_since(bad)
        assert e.value.field == field
    for bad in ("0", "10001", "-1", "1e3", "many"):
        with pytest.raises(InvalidError) as e:
            parse_limit(bad)
        assert e.value.field == "limit"
