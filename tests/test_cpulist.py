import re

import pytest

from kcm_hook import cpulist
from kcm_hook.errors import CpuListError


@pytest.mark.parametrize("text, cpus", [
    ("0", [0]),
    ("0-3", [0, 1, 2, 3]),
    ("0-2,8-10", [0, 1, 2, 8, 9, 10]),
    ("7,15", [7, 15]),
    ("3,1,2", [1, 2, 3]),
    ("1,1,1-2", [1, 2]),
    (" 4-5\n", [4, 5]),
    ("5-5", [5]),
    ("65535", [65535]),
])
def test_parse_valid(text, cpus):
    assert cpulist.parse(text) == cpus


@pytest.mark.parametrize("text, quoted", [
    ("", "empty"),
    ("   \n", "empty"),
    ("1,,2", "''"),
    (",1", "''"),
    ("1,", "''"),
    ("3-1", "'3-1'"),
    ("-1", "'-1'"),
    ("+1", "'+1'"),
    ("1-", "'1-'"),
    ("1-2-3", "'1-2-3'"),
    ("a", "'a'"),
    ("0x1", "'0x1'"),
    ("1 ,2", "'1 '"),
    ("\u0661", "'\u0661'"),
    ("0-99999999", "exceeds"),
    ("65536", "exceeds"),
])
def test_parse_rejects_and_quotes_the_bad_part(text, quoted):
    with pytest.raises(CpuListError, match=re.escape(quoted)):
        cpulist.parse(text)


def test_parse_empty_allowed_where_the_kernel_writes_empty_files():
    assert cpulist.parse("\n", allow_empty=True) == []


@pytest.mark.parametrize("cpus, text", [
    ([0], "0"),
    ([0, 1, 2, 8, 9, 10], "0-2,8-10"),
    ([15, 7], "7,15"),
    ([3, 1, 2, 2], "1-3"),
    ([0, 2, 4], "0,2,4"),
    ([4, 12], "4,12"),
])
def test_format_is_canonical(cpus, text):
    assert cpulist.format(cpus) == text
    assert cpulist.parse(cpulist.format(cpus)) == sorted(set(cpus))


def test_is_canonical():
    assert cpulist.is_canonical("0-2,8")
    assert not cpulist.is_canonical("0,1,2")
    assert not cpulist.is_canonical("x")
