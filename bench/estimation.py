"""What the estimation-heavy request of the benchmarks records: 14 points a request."""

from __future__ import annotations

from typing import Any

ESTIMATIONS = (
    "face_detection", "face_warp", "face_warp_quality", "eyes", "head_pose", "mask", "glasses",
    "emotions", "basic_attributes", "livenessv1",
)  # fmt: skip
POINTS_PER_REQUEST = 14
"""``sdkloop_task``, two ``image_load``, the ten estimations, ``usages_statistic``."""


def record_request(collector: Any) -> None:
    """An SDK handler's recording, its own work left out: two image loads, ten estimations
    (one with five fields set), two usages."""
    for image_format in ("JPEG", "PNG"):
        with collector.image_load(format=image_format, exif=True, autorotated=False) as load:
            load.set(size=48_213, height=480, width=640)
    with collector.estimation("face_detection", batch_size=2) as detection:
        detection.set(detection_count=2, image_height=480, image_width=640,
                      face_detection_height=120, face_detection_width=96)  # fmt: skip
    for series in ESTIMATIONS[1:]:
        with collector.estimation(series, batch_size=2):
            pass
    collector.add_usage("face_detector", 2)
    collector.add_usage("liveness_estimator", 2)
