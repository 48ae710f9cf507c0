"""The 44 series of the specification, as data."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from luna_monitoring.core.schema import (
    ESTIMATOR_SERIES,
    SERIES,
    USAGE_ESTIMATORS,
    Kind,
    get_series,
    series_table,
)

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "luna-remote-sdk-monitoring.txt"
"""The specification text: beside the checkout in this project's CI, absent on a user's clone."""
SPEC_DATA = Path(__file__).resolve().parent / "data" / "spec_series.json"
"""The specification's facts (series -> tags, fields) as test data kept in the repository."""


def _spec_text_series(text: str) -> dict[str, dict[str, list[str]]]:
    """Series name -> {"tags", "fields"} as the specification text lists them."""
    result = {}
    for chunk in text.split("\n- ")[1:]:
        head = re.match(r"(\w+) series\.", chunk)
        if not head:
            continue
        tags = re.search(r"series tags¶ - tag name - description - (.*?) - \w+ series", chunk)
        fields = re.search(
            r"series fields¶ - fields - description - (.*?)(?: - \w+ series|$)", chunk, re.M
        )
        result[head.group(1).lower()] = {
            "tags": re.findall(r"(?:^| - )(\w+) - ", tags.group(1)) if tags else [],
            "fields": re.findall(r"(?:^| - )(\w+_?\w*) - ", fields.group(1)) if fields else [],
        }
    return result


@pytest.fixture(scope="module")
def spec() -> dict[str, tuple[list[str], list[str]]]:
    """Series name -> (tags, fields) of the specification, from the repository's test data."""
    data = json.loads(SPEC_DATA.read_text())
    return {name: (entry["tags"], entry["fields"]) for name, entry in data.items()}


def test_spec_data_matches_the_specification_text():
    """The test data says what the specification text says (checked where the text is)."""
    if not SPEC.exists():
        if os.environ.get("CI"):
            pytest.fail(f"specification not found at {SPEC} (CI has it beside the checkout)")
        pytest.skip("the specification text is not beside this clone; the test data stands in")
    assert _spec_text_series(SPEC.read_text()) == json.loads(SPEC_DATA.read_text())


def test_all_44_series_declared():
    """6 service series plus 38 estimator series."""
    assert len(SERIES) == 44
    assert len(ESTIMATOR_SERIES) == 38
    assert len(USAGE_ESTIMATORS) == 23


def test_series_names_match_specification(spec):
    """Every series of the spec is declared, and nothing else."""
    assert set(SERIES) == set(spec)


def test_tags_match_specification(spec):
    """Required tags are the spec's tags besides service."""
    for name, (tags, _) in spec.items():
        assert ["service", *SERIES[name].tags] == tags, name


def test_fields_match_specification(spec):
    """Declared fields are the spec's fields (requests adds its additional field)."""
    for name, (_, fields) in spec.items():
        declared = list(SERIES[name].fields)
        if name == "requests":
            assert declared == [*fields, "load_images_for_processing_time"][: len(declared)]
        else:
            assert sorted(declared) == sorted(fields), name


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("execution_time", float),
        ("load_images_for_processing_time", float),
        ("request_id", str),
        ("warnings", str),
        ("errors", str),
        ("liveness_balance", int),
        ("size", int),
        ("bbox_width", int),
        ("detection_count", int),
        ("face_detector_usages", int),
    ],
)
def test_field_types_follow_design(field, kind):
    """A field name has one type in every series that has it."""
    types = {s.fields[field] for s in SERIES.values() if field in s.fields}
    assert types == {kind}


def test_descriptor_and_mode_tags():
    """descriptor_version is a tag of the descriptor series, mode of deepfake."""
    with_version = {n for n, s in SERIES.items() if "descriptor_version" in s.tags}
    assert with_version == {
        "aggregated_body_descriptor",
        "aggregated_face_descriptor",
        "body_descriptor",
        "face_descriptor",
    }
    assert SERIES["deepfake"].tags == ("batch_size", "mode")


def test_get_series_names_valid_choices():
    """An unknown series raises ValueError listing the valid ones."""
    with pytest.raises(ValueError, match="unknown series 'face'; valid series: requests, errors"):
        get_series("face")
    with pytest.raises(ValueError, match="valid series: aggregated_basic_attributes"):
        get_series("requests", kind=Kind.ESTIMATOR)


class TestValidation:
    def test_tags_become_strings(self):
        """int and bool tag values are written as str()."""
        tags = SERIES["image_load"].check_tags({"format": "JPEG", "exif": True, "autorotated": 0})
        assert tags == {"format": "JPEG", "exif": "True", "autorotated": "0"}

    def test_missing_tag(self):
        """A missing required tag names the required ones."""
        with pytest.raises(ValueError, match=r"missing required tag.*descriptor_version"):
            SERIES["face_descriptor"].check_tags({"batch_size": 1})

    def test_unknown_tag(self):
        """An unknown tag names the valid ones."""
        with pytest.raises(ValueError, match="unknown tag 'x'; valid tags: batch_size"):
            SERIES["mask"].check_tags({"batch_size": 1, "x": 1})

    def test_unknown_field(self):
        """An unknown field names the valid ones."""
        with pytest.raises(ValueError, match="unknown field 'size'; valid fields: execution_time"):
            SERIES["mask"].check_fields({"size": 1})

    def test_int_coerced_to_float_field(self):
        """An int given for a float field is written as float."""
        assert SERIES["mask"].check_fields({"execution_time": 1}) == {"execution_time": 1.0}

    @pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
    def test_missing_values_left_out(self, value):
        """None, NaN and infinities are never written."""
        assert SERIES["mask"].check_fields({"execution_time": value}) == {}

    @pytest.mark.parametrize(
        ("field", "value"),
        [("size", 1.5), ("size", "1"), ("size", True), ("execution_time", "0.1"), ("size", 2**63)],
    )
    def test_wrong_type_rejected(self, field, value):
        """A value of the wrong type is an error at the call site."""
        with pytest.raises(ValueError, match=f"field '{field}'"):
            SERIES["image_load"].check_fields({field: value})


def test_series_table_lists_every_series():
    """The printed table has one row per series, with tags and typed fields."""
    table = series_table()
    assert table.count("\n") == 44 + 2
    assert "| `image_load` | one image decoded for SDK estimations | `format`, `exif`," in table
