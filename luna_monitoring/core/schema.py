"""Every series of the LUNA Remote SDK monitoring specification, declared once as data.

A series is its measurement name, the tags it requires besides ``service`` and the fields
it may carry, each with one fixed type. Validation, the ``series`` command and the README's
series reference all read ``SERIES``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Kind(StrEnum):
    """Who emits a series."""

    REQUEST = "request"
    LICENSING = "licensing"
    SDK = "sdk"
    ESTIMATOR = "estimator"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Series:
    """One series: measurement name, required tags (besides ``service``), typed fields."""

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...]
    fields: Mapping[str, type]

    def check_tags(self, tags: Mapping[str, Any], *, extra_allowed: bool = False) -> dict:
        """Return the tags as strings; raise ``ValueError`` on a missing or unknown tag."""
        missing = [t for t in self.tags if tags.get(t) is None]
        if missing:
            raise ValueError(
                f"{self.name}: missing required tag(s) {', '.join(missing)}; "
                f"required: {', '.join(self.tags) or 'none'}"
            )
        result = {}
        for key, value in tags.items():
            if key not in self.tags and not extra_allowed and key != "service":
                raise ValueError(
                    f"{self.name}: unknown tag {key!r}; valid tags: {', '.join(self.tags)}"
                )
            result[key] = tag_value(self.name, key, value)
        return result

    def check_fields(self, values: Mapping[str, Any], *, drop: type | None = None) -> dict:
        """Return fields converted to their declared types; raise ``ValueError`` on misuse,
        or with ``drop`` given, put ``drop(message)`` in the field's place instead.

        ``None``, NaN and infinite values are dropped: they are never written.
        """
        result = {}
        for key, value in values.items():
            try:
                expected = self.fields.get(key)
                if expected is None:
                    raise ValueError(
                        f"{self.name}: unknown field {key!r}; "
                        f"valid fields: {', '.join(self.fields)}"
                    )
                converted = field_value(self.name, key, value, expected)
            except ValueError as exc:
                if drop is None:
                    raise
                converted = drop(str(exc))
            if converted is not None:
                result[key] = converted
        return result


def tag_value(series: str, key: str, value: Any) -> str:
    """A tag value as written: ``str(value)`` of a str, int, float, bool or other real number
    (``Decimal``, ``Fraction``, ...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | numbers.Real | Decimal):
        return str(value)
    raise ValueError(
        f"{series}: tag {key!r} must be str, int, float or bool, got {type(value).__name__}"
    )


def field_value(series: str, key: str, value: Any, expected: type) -> Any:
    """``value`` as the field's declared type, or ``None`` when it is not to be written.

    A float field takes any real number (``int``, ``Decimal``, ``Fraction``, ...) as a float;
    an int field any real number with an integral value, as an int. ``ValueError`` for
    another type, a fraction for an int field, or an int outside int64.
    """
    if value is None:
        return None
    kind = type(value)
    if expected is float and kind in (float, int):
        value = float(value)
        return value if math.isfinite(value) else None
    if expected is int and kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise ValueError(f"{series}: field {key!r} = {value} is outside the int64 range")
    if expected is str and kind is str:
        return value
    if expected in (int, float) and kind is not bool and isinstance(value, _REAL):
        return _real(series, key, value, expected)
    raise ValueError(
        f"{series}: field {key!r} must be {expected.__name__}, got {kind.__name__} {value!r:.80}"
    )


_REAL = (numbers.Real, Decimal)


def _real(series: str, key: str, value: Any, expected: type) -> Any:
    """A real number (not a bool) as a float, or as an int when it is integral."""
    try:
        number = float(value)
    except (ArithmeticError, ValueError) as exc:  # Fraction beyond float, Decimal sNaN
        raise ValueError(f"{series}: field {key!r} = {value!r:.80}: {exc}") from None
    if not math.isfinite(number):
        return None
    if expected is float:
        return number
    if value != int(value):
        raise ValueError(f"{series}: field {key!r} must be int, got {type(value).__name__} {value}")
    return field_value(series, key, int(value), int)


def _fields(*names: str) -> Mapping[str, type]:
    """Field types by the naming rule of the spec."""
    types = {}
    for name in names:
        if name == "execution_time" or name.endswith("_time"):
            types[name] = float
        elif name in ("request_id", "warnings", "errors"):
            types[name] = str
        else:
            types[name] = int
    return MappingProxyType(types)


USAGE_ESTIMATORS: tuple[str, ...] = (
    "people_counter",
    "face_detector",
    "landmarks68_detector",
    "head_pose_estimator",
    "liveness_estimator",
    "mask_estimator",
    "emotion_estimator",
    "mouth_estimator",
    "eye_estimator",
    "gaze_estimator",
    "glasses_estimator",
    "face_warp_quality_estimator",
    "face_basic_attributes_extractor",
    "face_descriptor_extractor",
    "iso_estimator",
    "face_quality_estimator",
    "body_detector",
    "body_descriptor_extractor",
    "body_basic_attributes_estimator",
    "body_upper_attributes_estimator",
    "body_accessories_estimator",
    "body_lower_attributes_estimator",
    "deepfake_estimator",
)
"""Estimators counted by ``usages_statistic``; each has a ``<name>_usages`` field."""

_DETECTION = ("image_height", "image_width", "detection_count")
_BBOX = ("bbox_width", "bbox_height")

# name -> (extra tags besides batch_size, fields besides execution_time)
_ESTIMATORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aggregated_basic_attributes": ((), ()),
    "aggregated_body_descriptor": (("descriptor_version",), ()),
    "aggregated_face_descriptor": (("descriptor_version",), ()),
    "basic_attributes": ((), ()),
    "body_attributes": ((), ()),
    "body_descriptor": (("descriptor_version",), ()),
    "body_detection": ((), ("body_detection_height", "body_detection_width", *_DETECTION)),
    "body_redetection": (
        (),
        ("body_detection_height", "body_detection_width", *_DETECTION, *_BBOX),
    ),
    "body_warp": ((), ()),
    "deepfake": (("mode",), ()),
    "dynamic_range": ((), ()),
    "emotions": ((), ()),
    "eyebrow_expression": ((), ()),
    "eyes": ((), ()),
    "face_descriptor": (("descriptor_version",), ()),
    "face_detection": ((), ("face_detection_height", "face_detection_width", *_DETECTION)),
    "face_detection_background": ((), ()),
    "face_natural_light": ((), ()),
    "face_redetection": (
        (),
        ("face_detection_height", "face_detection_width", *_DETECTION, *_BBOX),
    ),
    "face_warp": ((), ()),
    "face_warp_quality": ((), ()),
    "fisheye": ((), ()),
    "gaze_direction": ((), ()),
    "glasses": ((), ()),
    "head_pose": ((), ()),
    "headwear": ((), ()),
    "human_detection": (
        (),
        (
            "face_detection_height",
            "face_detection_width",
            "body_detection_height",
            "body_detection_width",
            *_DETECTION,
            "face_detection_count",
            "body_detection_count",
        ),
    ),
    "image_orientation": ((), ()),
    "image_color_type": ((), ()),
    "landmarks17": ((), ()),
    "landmarks5": ((), ()),
    "landmarks68": ((), ()),
    "livenessv1": ((), ()),
    "mask": ((), ()),
    "mouth_state": ((), ()),
    "people_count": ((), ()),
    "portrait_style": ((), ()),
    "red_eyes": ((), ()),
}


def _build() -> dict[str, Series]:
    table = [
        Series(
            "requests",
            Kind.REQUEST,
            "every HTTP request",
            ("route", "status_code"),
            _fields("request_id", "execution_time", "load_images_for_processing_time"),
        ),
        Series(
            "errors",
            Kind.REQUEST,
            "every response with status >= 400",
            ("route", "status_code", "error_code"),
            _fields("request_id"),
        ),
        Series(
            "licensing",
            Kind.LICENSING,
            "a licence check that warns or fails",
            ("license_status",),
            _fields("liveness_balance", "warnings", "errors"),
        ),
        Series(
            "usages_statistic",
            Kind.SDK,
            "estimator usage counts of a request with SDK estimations",
            (),
            _fields(*(f"{name}_usages" for name in USAGE_ESTIMATORS)),
        ),
        Series(
            "sdkloop_task",
            Kind.SDK,
            "a request with SDK estimations",
            ("image_count",),
            _fields("execution_time"),
        ),
        Series(
            "image_load",
            Kind.SDK,
            "one image decoded for SDK estimations",
            ("format", "exif", "autorotated"),
            _fields("execution_time", "size", "height", "width"),
        ),
    ]
    for name, (tags, extra_fields) in _ESTIMATORS.items():
        table.append(
            Series(
                name,
                Kind.ESTIMATOR,
                f"{name.replace('_', ' ')} estimations",
                ("batch_size", *tags),
                _fields("execution_time", *extra_fields),
            )
        )
    return {series.name: series for series in table}


SERIES: Mapping[str, Series] = MappingProxyType(_build())
"""All 44 series by measurement name."""

ESTIMATOR_SERIES: tuple[str, ...] = tuple(
    s.name for s in SERIES.values() if s.kind is Kind.ESTIMATOR
)
"""The 38 per-estimator series."""


def get_series(name: str, *, kind: Kind | None = None) -> Series:
    """The series called ``name`` (of ``kind`` if given); ``ValueError`` lists valid names."""
    series = SERIES.get(name)
    if series is None or (kind is not None and series.kind is not kind):
        valid = [s.name for s in SERIES.values() if kind is None or s.kind is kind]
        raise ValueError(f"unknown series {name!r}; valid series: {', '.join(valid)}")
    return series


def series_table(custom: Mapping[str, Series] | None = None) -> str:
    """The series reference as a Markdown table (``python -m luna_monitoring series``),
    followed by the ``custom`` series of a config if given."""
    lines = [
        "| series | emitted for | tags (besides `service`) | fields |",
        "|---|---|---|---|",
    ]
    for s in (*SERIES.values(), *(custom or {}).values()):
        tags = ", ".join(f"`{t}`" for t in s.tags) or "—"
        fields = ", ".join(f"`{k}` {t.__name__}" for k, t in s.fields.items())
        lines.append(f"| `{s.name}` | {s.description} | {tags} | {fields} |")
    return "\n".join(lines) + "\n"
