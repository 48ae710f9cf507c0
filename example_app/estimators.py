"""Deterministic stand-ins for LUNA SDK estimators, derived from pixel statistics.

Each estimator runs in batches and records one point of its series per batch through
:func:`current_collector`, and counts its usages. Its answers come from simple statistics
of the pixels (brightness, contrast, left/right and top/bottom balance, colour), so the
same image always gives the same answer. Estimators are data: one row per series.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any, Protocol

from PIL import Image, ImageStat

from luna_monitoring import current_collector

from .images import LoadedImage

FACE, BODY, IMAGE = "face", "body", "image"
FACE_DESCRIPTOR_VERSION = 59
BODY_DESCRIPTOR_VERSION = 110
DEEPFAKE_MODES = ("1", "2")


@dataclass(frozen=True, slots=True)
class Stats:
    """Pixel statistics of an image or a crop of it (grey levels 0..255)."""

    width: int
    height: int
    mean: float
    std: float
    left: float
    right: float
    top: float
    bottom: float
    colourfulness: float

    def score(self, salt: str) -> float:
        """A number in [0, 1) that depends only on these statistics and ``salt``."""
        key = f"{salt}|{self.mean:.2f}|{self.std:.2f}|{self.left - self.right:.2f}"
        return zlib.crc32(key.encode()) / 2**32


_HALVES = ((0, 0, 16, 32), (16, 0, 32, 32), (0, 0, 32, 16), (0, 16, 32, 32))  # l, r, t, b


def pixel_stats(image: Image.Image) -> Stats:
    """The statistics of an RGB image, computed on a 32x32 thumbnail."""
    small = image.resize((32, 32))
    grey = small.convert("L")
    stat = ImageStat.Stat(grey)
    halves = [ImageStat.Stat(grey.crop(box)).mean[0] for box in _HALVES]
    channels = ImageStat.Stat(small).mean
    return Stats(
        image.width,
        image.height,
        stat.mean[0],
        stat.stddev[0],
        *halves,
        max(channels) - min(channels),
    )


@dataclass(frozen=True, slots=True)
class Detection:
    """A face or body found in image number ``image``: its box and score."""

    image: int
    x: int
    y: int
    width: int
    height: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The box as Pillow crops it."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def rect(self) -> dict[str, int]:
        """The box as LUNA answers it."""
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


def detect(index: int, stats: Stats, target: str) -> list[Detection]:
    """Faces (square boxes) or bodies (tall boxes): none in a flat image, one or two else."""
    if stats.std < 8:
        return []
    count = 2 if stats.score(f"{target}_count") > 0.85 else 1
    slot = stats.width // count
    height = int(stats.height * (0.3 if target == FACE else 0.8) * (1 + stats.score(target)) / 2)
    height = max(height, 1)
    width = max(min(slot, height if target == FACE else height // 2), 1)
    score = round(0.9 + stats.std / 2550, 4)
    y = (stats.height - height) // 3
    return [
        Detection(index, i * slot + (slot - width) // 2, y, width, height, score)
        for i in range(count)
    ]


def _choice(*classes: str) -> Callable[[Stats, str], dict[str, Any]]:
    """The first class (the usual one) for most inputs, one of the others for the rest."""

    def answer(stats: Stats, series: str) -> dict[str, Any]:
        score = stats.score(series)
        rest = int((score - 0.7) / 0.3 * (len(classes) - 1)) + 1
        return {"result": classes[0] if score < 0.7 else classes[rest], "score": round(score, 4)}

    return answer


def _score(stats: Stats, series: str) -> dict[str, Any]:
    return {"score": round(stats.score(series), 4)}


def _head_pose(stats: Stats, series: str) -> dict[str, Any]:
    return {
        "yaw": round((stats.right - stats.left) / 255 * 90, 2),
        "pitch": round((stats.bottom - stats.top) / 255 * 90, 2),
        "roll": round((stats.score(series) - 0.5) * 20, 2),
    }


def _basic_attributes(stats: Stats, series: str) -> dict[str, Any]:
    return {
        "age": 18 + int(stats.score(series) * 50),
        "gender": "female" if stats.score("gender") < 0.5 else "male",
    }


def _descriptor(stats: Stats, series: str) -> dict[str, Any]:
    return {"checksum": f"{zlib.crc32(repr(stats).encode()):08x}"}


def _colour_type(stats: Stats, series: str) -> dict[str, Any]:
    return {"result": "color" if stats.colourfulness >= 2 else "grayscale"}


@dataclass(frozen=True, slots=True)
class Estimator:
    """One estimator: its series, what it looks at, its answer and the usages it counts."""

    series: str
    target: str
    answer: Callable[[Stats, str], dict[str, Any]] = _score
    usages: tuple[str, ...] = ()
    descriptor_version: int | None = None

    def tags(self, deepfake_mode: str) -> dict[str, Any]:
        """The series' tags besides ``batch_size``."""
        if self.descriptor_version is not None:
            return {"descriptor_version": self.descriptor_version}
        return {"mode": deepfake_mode} if self.series == "deepfake" else {}


def _face(
    series: str, answer: Callable = _score, *usages: str, version: int | None = None
) -> Estimator:
    return Estimator(series, FACE, answer, usages, version)


_BODY_ATTRIBUTES = (
    "body_basic_attributes_estimator",
    "body_upper_attributes_estimator",
    "body_lower_attributes_estimator",
    "body_accessories_estimator",
)

ESTIMATORS: dict[str, Estimator] = {
    e.series: e
    for e in (
        _face("landmarks5"),
        _face("landmarks68", _score, "landmarks68_detector"),
        _face("head_pose", _head_pose, "head_pose_estimator"),
        _face("gaze_direction", _head_pose, "gaze_estimator"),
        _face("livenessv1", _choice("real", "spoof"), "liveness_estimator"),
        _face("deepfake", _choice("real", "fake"), "deepfake_estimator"),
        _face("eyes", _choice("open", "closed", "occluded"), "eye_estimator"),
        _face("mouth_state", _choice("closed", "opened", "smile"), "mouth_estimator"),
        _face(
            "emotions", _choice("neutral", "happiness", "surprise", "anger"), "emotion_estimator"
        ),
        _face("mask", _choice("missing", "medical_mask", "occluded"), "mask_estimator"),
        _face("glasses", _choice("no_glasses", "eyeglasses", "sunglasses"), "glasses_estimator"),
        _face("face_warp_quality", _score, "face_warp_quality_estimator"),
        _face("basic_attributes", _basic_attributes, "face_basic_attributes_extractor"),
        _face(
            "face_descriptor",
            _descriptor,
            "face_descriptor_extractor",
            version=FACE_DESCRIPTOR_VERSION,
        ),
        # ISO 19794-5 checks (counted as face_quality_estimator usages by /iso)
        _face("face_natural_light", _choice("natural", "not_natural")),
        _face("dynamic_range", _choice("good", "low")),
        _face("fisheye", _choice("no_fisheye", "fisheye")),
        _face("red_eyes", _choice("no_red_eyes", "red_eyes")),
        _face("eyebrow_expression", _choice("neutral", "raised", "frowning")),
        _face("headwear", _choice("none", "hat", "hood", "cap")),
        _face("portrait_style", _choice("portrait", "non_portrait")),
        _face("face_detection_background", _choice("uniform", "non_uniform")),
        Estimator("landmarks17", BODY),
        Estimator("body_attributes", BODY, _score, _BODY_ATTRIBUTES),
        Estimator(
            "body_descriptor",
            BODY,
            _descriptor,
            ("body_descriptor_extractor",),
            BODY_DESCRIPTOR_VERSION,
        ),
        Estimator("image_color_type", IMAGE, _colour_type),
        Estimator("image_orientation", IMAGE, _choice("normal", "left", "right", "upside_down")),
    )
}
"""The estimators that run on detections (after warping) or on whole images."""

REDETECTIONS = {"face_redetection": FACE, "body_redetection": BODY}
AGGREGATIONS = {
    "aggregated_face_descriptor": "face_descriptor",
    "aggregated_basic_attributes": "basic_attributes",
    "aggregated_body_descriptor": "body_descriptor",
}
ISO_CHECKS = frozenset(
    (
        "landmarks68",
        "head_pose",
        "eyes",
        "glasses",
        "face_natural_light",
        "dynamic_range",
        "fisheye",
        "red_eyes",
        "eyebrow_expression",
        "headwear",
        "portrait_style",
        "face_detection_background",
        "image_color_type",
        "image_orientation",
    )
)
"""What ``/iso`` estimates: the ISO/IEC 19794-5 portrait checks."""
_TARGETS = {
    **{name: e.target for name, e in ESTIMATORS.items()},
    **REDETECTIONS,
    "face_detection": FACE,
    "body_detection": BODY,
}
SDK_ESTIMATIONS = frozenset((*_TARGETS, "human_detection", "people_count"))
"""What ``/sdk?estimate=`` accepts (aggregations come with ``aggregate=1``)."""
_PLURAL = {FACE: "faces", BODY: "bodies"}


class LivenessGate(Protocol):
    """Grants liveness estimations from a balance; ``refused`` once it fell short."""

    refused: bool

    def take(self, count: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Job:
    """What one request asks for."""

    estimate: frozenset[str]
    liveness: LivenessGate
    deepfake_mode: str = "1"
    aggregate: bool = False


def _detect_all(job: Job, stats: list[Stats], target: str) -> list[Detection]:
    """Detections of ``target`` in every image, if any estimation needs them."""
    if not any(_TARGETS.get(name) == target for name in job.estimate):
        return []
    collector = current_collector()
    found: list[Detection] = []
    for index, st in enumerate(stats):
        with collector.estimation(f"{target}_detection", batch_size=1) as est:
            objects = detect(index, st, target)
            first = objects[0] if objects else None
            est.set(
                detection_count=len(objects),
                image_height=st.height,
                image_width=st.width,
                **{
                    f"{target}_detection_height": first and first.height,
                    f"{target}_detection_width": first and first.width,
                },
            )
        collector.add_usage(f"{target}_detector")
        found.extend(objects)
    return found


def _image_level(job: Job, stats: list[Stats]) -> list[dict[str, Any]]:
    """Human detection, people count, redetections and whole-image estimators."""
    collector = current_collector()
    results: list[dict[str, Any]] = []
    for index, st in enumerate(stats):
        answer: dict[str, Any] = {}
        if "human_detection" in job.estimate:
            with collector.estimation("human_detection", batch_size=1) as est:
                faces, bodies = detect(index, st, FACE), detect(index, st, BODY)
                est.set(
                    detection_count=len(faces) + len(bodies),
                    face_detection_count=len(faces),
                    body_detection_count=len(bodies),
                    image_height=st.height,
                    image_width=st.width,
                )
            collector.add_usage("face_detector")
            collector.add_usage("body_detector")
            answer["human_detection"] = {"faces": len(faces), "bodies": len(bodies)}
        if "people_count" in job.estimate:
            with collector.estimation("people_count", batch_size=1):
                answer["people_count"] = len(detect(index, st, BODY))
            collector.add_usage("people_counter")
        for series, target in REDETECTIONS.items():
            if series in job.estimate:
                answer[series] = [_redetect(series, d, st) for d in detect(index, st, target)]
        for name in sorted(job.estimate):
            if _TARGETS.get(name) == IMAGE:
                with collector.estimation(name, batch_size=1):
                    answer[name] = ESTIMATORS[name].answer(st, name)
        results.append(answer)
    return results


def _redetect(series: str, given: Detection, st: Stats) -> dict[str, int]:
    """Refine a box given by the client (here: one the detector found)."""
    target = REDETECTIONS[series]
    collector = current_collector()
    with collector.estimation(series, batch_size=1) as est:
        refined = {
            "x": given.x + 1,
            "y": given.y + 1,
            "width": max(given.width - 2, 1),
            "height": max(given.height - 2, 1),
        }
        est.set(
            detection_count=1,
            image_height=st.height,
            image_width=st.width,
            bbox_width=given.width,
            bbox_height=given.height,
            **{
                f"{target}_detection_height": refined["height"],
                f"{target}_detection_width": refined["width"],
            },
        )
    collector.add_usage(f"{target}_detector")
    return refined


def _estimate_objects(
    job: Job, target: str, detections: list[Detection], images: list[LoadedImage]
) -> tuple[dict[str, list[Any]], list[Stats]]:
    """Warp the detections of ``target``, then run each requested estimator as one batch.

    Returns the answers by series (``None`` where the liveness balance ran out) and the warps.
    """
    collector = current_collector()
    wanted = [e for name, e in ESTIMATORS.items() if name in job.estimate and e.target == target]
    if not detections or not wanted:
        return {}, []
    with collector.estimation(f"{target}_warp", batch_size=len(detections)):
        warps = [pixel_stats(images[d.image].image.crop(d.box)) for d in detections]
    answers: dict[str, list[Any]] = {}
    for estimator in wanted:
        batch, results = warps, []
        if estimator.series == "livenessv1":
            batch = warps[: job.liveness.take(len(warps))]
        if batch:
            with collector.estimation(
                estimator.series, batch_size=len(batch), **estimator.tags(job.deepfake_mode)
            ):
                results = [estimator.answer(w, estimator.series) for w in batch]
            for usage in estimator.usages:
                collector.add_usage(usage, len(batch))
        answers[estimator.series] = results + [None] * (len(warps) - len(batch))
    return answers, warps


def _aggregate(job: Job, warps: dict[str, list[Stats]]) -> dict[str, Any]:
    """One answer per aggregation over all detections of the request."""
    collector = current_collector()
    aggregated = {}
    for series, source in AGGREGATIONS.items():
        estimator = ESTIMATORS[source]
        objects = warps[estimator.target]
        if source in job.estimate and objects:
            tags = estimator.tags(job.deepfake_mode)
            with collector.estimation(series, batch_size=len(objects), **tags):
                mean = Stats(*(sum(c) / len(c) for c in zip(*map(astuple, objects), strict=True)))
                aggregated[series] = estimator.answer(mean, source)
    return aggregated


def run(job: Job, images: list[LoadedImage]) -> dict[str, Any]:
    """Run a request's estimations on its images; the JSON answer of ``/sdk`` or ``/iso``."""
    stats = [pixel_stats(loaded.image) for loaded in images]
    per_image = _image_level(job, stats)
    answer = [
        {
            "filename": loaded.filename,
            "format": loaded.format,
            "width": loaded.image.width,
            "height": loaded.image.height,
            "autorotated": loaded.autorotated,
            "estimations": per_image[index],
            "faces": [],
            "bodies": [],
        }
        for index, loaded in enumerate(images)
    ]
    warps = {}
    for target in (FACE, BODY):
        detections = _detect_all(job, stats, target)
        answers, warps[target] = _estimate_objects(job, target, detections, images)
        for position, d in enumerate(detections):
            answer[d.image][_PLURAL[target]].append(
                {
                    "rect": d.rect(),
                    "score": d.score,
                    "estimations": {name: got[position] for name, got in answers.items()},
                }
            )
    result: dict[str, Any] = {"images": answer}
    if job.aggregate:
        result["aggregated"] = _aggregate(job, warps)
    return result
