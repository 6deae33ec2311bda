"""The dedupe settings (``deduped_images`` config): one module that the engine, its phases and the matcher
all read, so none of them imports another for its settings. No Dagster imports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from samantics_dagster.core.dedupe.orb import OrbSettings


@dataclass(frozen=True)
class SignalSettings:
    """Knobs of the second signals (``DedupeSettings.signals``); see README for what each trades."""

    min_structure: int = 32      # bits of 64 decided by a clear margin for a hash match to be final
    colour_max: float = 11.0     # mean |RGB difference| of 16x9 thumbnails (grey levels) still "same scene"
    structured_colour_max: float = 22.0  # the same, where the hash or ORB also vouch for the grey layout
    min_response: float = 0.15   # phase-correlation peak below which no shift explains the pair: different
    min_texture: float = 0.7     # grey std left after taking a quadratic surface away, below which there is
                                 # nothing to lock on to (pure gradients measure 0.3-0.5, lit walls 0.8-1.1)
    max_texture_ratio: float = 1.6  # two frames of one smooth scene carry alike detail (jitter, noise and blur
                                    # move the texture measure by < 30%); a dim page is not a dark glow
    lock_response: float = 0.6  # a phase-correlation peak this high at a jitter's shift is the same frame, where
                                 # ORB fits no geometry (fine repeated texture)
    min_chroma: float = 3.0      # mean opponent colour (grey levels) a frame needs for its hue to count
    max_hue_deg: float = 20.0    # mean hues further apart than this are other scenes, however close the
                                 # colour distance (muted walls 60 degrees apart differ by a few grey levels)



@dataclass(frozen=True)
class DedupeSettings:
    """``dhash_threshold``: at or below it a frame duplicates an accepted one, no questions asked.
    Between it and ``dhash_verify_threshold`` a hash match is only a candidate, confirmed by the ORB +
    geometry test against the matched frame: low-texture views (a sky gradient, a lit wall) hash
    to nearly all-zero codes that collide across different photos, and one threshold can't both keep
    them apart and catch a jittered repeat from another video (measured: README, benchmarks).
    ``signals``: when a hash match may be final at all (its structure), and the colour and shift tests
    that decide for frames whose hash and corners carry too little (``matcher.py``)."""

    dhash_threshold: int = 4
    dhash_verify_threshold: int = 10
    use_orb: bool = True
    orb_window: int = 5
    orb: OrbSettings = field(default_factory=OrbSettings)
    signals: SignalSettings = field(default_factory=SignalSettings)

    def fingerprint(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]
