"""HeaderText / HeaderName: what Sanic's header sanitising skips, and nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from implementations import KINDS, swapped_methods
from multidict import CIMultiDict
from sanic.response import text

from luna_monitoring.sanic.header_text import HeaderName, HeaderText

REQUEST_ID = "1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427"


@pytest.fixture(scope="module", params=KINDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: with the compiled ``translate``/``__format__`` and in Python."""
    kind = request.param
    with contextlib.contextmanager(swapped_methods)(kind, HeaderName, ("translate",)):
        yield from swapped_methods(kind, HeaderText, ("translate", "__format__"))


def test_sanics_table_returns_the_text_itself():
    """Where Sanic has the table (24.12.1, 25.12+), translating with it is free."""
    types = pytest.importorskip("sanic.response.types")
    if not hasattr(types, "HEADER_TRANSLATION_TABLE"):
        pytest.skip("this Sanic sanitises headers without HEADER_TRANSLATION_TABLE")
    HEADER_TRANSLATION_TABLE = types.HEADER_TRANSLATION_TABLE
    value, name = HeaderText(REQUEST_ID), HeaderName("LUNA-Request-Id")
    assert value.translate(HEADER_TRANSLATION_TABLE) is value
    assert name.translate(HEADER_TRANSLATION_TABLE) is name


def test_other_tables_translate_as_str_does():
    table = str.maketrans({"-": "+", ",": None})
    assert HeaderText(REQUEST_ID).translate(table) == REQUEST_ID.translate(table)
    assert HeaderName("A-b").translate(table) == "A+b"


def test_formatting_without_a_spec_keeps_the_text_and_with_one_formats_it():
    value = HeaderText("abc")
    assert f"{value}" is value
    assert f"{value:>5}" == "  abc" and type(f"{value:>5}") is str


def test_the_name_is_case_insensitive():
    headers = CIMultiDict()
    headers[HeaderName("LUNA-Request-Id")] = "x"
    assert headers["luna-request-id"] == headers["LUNA-REQUEST-ID"] == "x"


def test_sanic_sends_both_unchanged():
    response = text("hello")
    response.headers[HeaderName("LUNA-Request-Id")] = HeaderText(REQUEST_ID)
    assert (b"LUNA-Request-Id", REQUEST_ID.encode()) in list(response.processed_headers)
