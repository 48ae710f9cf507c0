"""LUNA request ids: which incoming ids are kept, what new ids look like."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luna_monitoring.core.request_id import is_request_id, python_new_request_id, request_id_for
from luna_monitoring.core.speedups import speedups

UUID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


@pytest.fixture(scope="module", params=["compiled", "python"])
def new_request_id(request: pytest.FixtureRequest):
    """The compiled ``new_request_id`` (``core/_speedups.c``) and the pure-Python one."""
    if request.param == "python":
        return python_new_request_id
    if speedups is None:
        pytest.skip("the compiled hot paths are not built")
    return speedups.new_request_id


@pytest.mark.parametrize(
    "value",
    [
        f"1700000000,{UUID}",
        f"0,{UUID}",
        f"1700000000,{UUID.upper()}",
        "1536751345,6a5c2191-3e9b-f5a4-fa2b-c7bb3a6d2ad4",  # any UUID version, as LUNA sends
    ],
)
def test_well_formed_ids_are_kept(value):
    assert is_request_id(value)
    assert request_id_for(value, 1800000000) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        UUID,
        "1700000000",
        f"1700000000, {UUID}",
        f" 1700000000,{UUID}",
        f"1700000000,{UUID}\n",
        f"17000000000,{UUID}",  # 11 digits
        f"-1,{UUID}",
        f"1700000000,{UUID.replace('-', '')}",
        f"1700000000,{UUID[:-1]}g",
        f"1700000000;{UUID}",
        f"\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,{UUID}",  # Arabic digits
    ],
)
def test_malformed_ids_are_replaced(value):
    assert not is_request_id(value)
    made = request_id_for(value, 1800000000)
    assert made.startswith("1800000000,") and is_request_id(made)


def test_missing_id_gets_a_new_one():
    assert request_id_for(None, 1800000000).startswith("1800000000,")


@given(seconds=st.integers(min_value=0, max_value=9_999_999_999))
def test_new_ids_are_seconds_and_a_canonical_version_4_uuid(new_request_id, seconds):
    made = new_request_id(seconds)
    prefix, _, text = made.partition(",")
    parsed = uuid.UUID(text)
    assert prefix == str(seconds)
    assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    assert is_request_id(made)


def test_new_ids_do_not_repeat(new_request_id):
    assert len({new_request_id(1700000000) for _ in range(100_000)}) == 100_000


def test_new_ids_use_all_random_bits(new_request_id):
    """Every one of the 122 random bits of the UUID takes both values."""
    values = [uuid.UUID(new_request_id(0)[2:]).int for _ in range(2000)]
    ones = zeros = 0
    for value in values:
        ones |= value
        zeros |= ~value
    version_and_variant = (0xF << 76) | (0x3 << 62)
    assert ones & zeros & (2**128 - 1) == (2**128 - 1) & ~version_and_variant


def test_a_forked_child_does_not_reuse_the_parents_uuids(new_request_id):
    new_request_id(0)  # the parent now holds a batch of unused UUIDs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, new_request_id(0).encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert is_request_id(child)
    assert child not in {new_request_id(0) for _ in range(300)}
