"""Near-duplicate test between frames of one video: ORB matches *and* a geometric check.

The good-match ratio alone can't tell a 4 px jitter from a 200 px pan (both ~0.85 on a pan, measured on
the sample's pans), so a pair is a duplicate only if a RANSAC similarity fit on the
matches explains most of them with a small motion: little shift of the frame centre, little zoom,
little rotation. A 64x64 normalised thumbnail difference screens out clearly different pairs first,
which is ~100x cheaper than matching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

THUMB = 64


@dataclass(frozen=True)
class OrbSettings:
    max_side: int = 640            # decode size for matching; ORB at 720p costs 4x more for no gain
    n_features: int = 500          # OpenCV's default
    ratio_test: float = 0.75       # Lowe's ratio on the 2 nearest neighbours
    min_good_matches: int = 15     # fewer and the geometry is not trustworthy: call it different
    min_inlier_ratio: float = 0.5  # RANSAC inliers / good matches
    max_shift: float = 0.04        # centre displacement / long side
    max_scale_change: float = 0.05
    max_rotation_deg: float = 3.0
    screen_distance: float = 0.9   # mean |z-score difference| of thumbnails above which a pair is different
                                   # (handheld jitter + blur reach 0.75 on a duplicate; other views sit near 1.1)


@dataclass
class OrbFeatures:
    points: np.ndarray             # (N, 2) float32 keypoint coordinates
    descriptors: np.ndarray | None # (N, 32) uint8
    thumb: np.ndarray              # (64, 64) float32, zero mean, unit variance
    long_side: int
    centre: tuple[float, float]


@dataclass(frozen=True)
class OrbVerdict:
    duplicate: bool
    why: str                       # a short figure string for the table, e.g. "shift 0.006, 212/230 inliers"


def _normalised_thumb(grey: np.ndarray) -> np.ndarray:
    t = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (t - t.mean()) / (t.std() + 1e-3)


def orb_features(grey: np.ndarray, settings: OrbSettings, detector: cv2.ORB | None = None) -> OrbFeatures:
    # cv2.ORB.create is the binding cv2.ORB_create aliases (both cv::ORB::create); only it is in the stubs
    detector = detector or cv2.ORB.create(nfeatures=settings.n_features)
    keypoints, descriptors = detector.detectAndCompute(grey, None)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    h, w = grey.shape[:2]
    return OrbFeatures(points, descriptors, _normalised_thumb(grey), max(h, w), (w / 2.0, h / 2.0))


def thumb_distance(a: OrbFeatures, b: OrbFeatures) -> float:
    return float(np.mean(np.abs(a.thumb - b.thumb)))


def compare(a: OrbFeatures, b: OrbFeatures, settings: OrbSettings,
            matcher: cv2.BFMatcher | None = None, flat: Callable[[], OrbVerdict] | None = None) -> OrbVerdict:
    """Is ``b`` a near-duplicate of ``a``? ``a`` is the earlier, accepted frame.

    With too few keypoints there is no geometry to fit: ``flat`` (colour + phase-correlation shift,
    ``matcher.Matcher.flat_verdict``) decides then; without it such a pair is called different (a
    normalised thumbnail of a textureless frame is mostly noise, so it can't say "same").
    """
    tdist = thumb_distance(a, b)
    if tdist > settings.screen_distance:
        return OrbVerdict(False, f"thumb {tdist:.2f}")
    few = min(len(a.points), len(b.points)) < settings.min_good_matches
    if few or a.descriptors is None or b.descriptors is None:
        return flat() if flat is not None else OrbVerdict(False, f"too few keypoints, thumb {tdist:.2f}")
    matcher = matcher or cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(b.descriptors, a.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < settings.ratio_test * m[1].distance]
    if len(good) < settings.min_good_matches:
        return OrbVerdict(False, f"{len(good)} good matches")
    src = b.points[[m.queryIdx for m in good]]
    dst = a.points[[m.trainIdx for m in good]]
    fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if fit is None:
        return OrbVerdict(False, "no similarity fit")
    n_in = int(inliers.sum())
    scale = math.hypot(fit[0, 0], fit[1, 0])
    rotation = math.degrees(math.atan2(fit[1, 0], fit[0, 0]))
    cx, cy = b.centre
    mx, my = fit @ np.array([cx, cy, 1.0])
    shift = math.hypot(mx - a.centre[0], my - a.centre[1]) / max(a.long_side, 1)
    duplicate = (
        n_in >= settings.min_good_matches
        and n_in / len(good) >= settings.min_inlier_ratio
        and shift <= settings.max_shift
        and abs(scale - 1.0) <= settings.max_scale_change
        and abs(rotation) <= settings.max_rotation_deg
    )
    return OrbVerdict(duplicate, f"shift {shift:.3f}, scale {scale:.3f}, {n_in}/{len(good)} inliers")
