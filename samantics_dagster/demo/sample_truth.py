"""The sample workdir's known truth (which frame shows which scene, which files are bad) and the
dedupe score against it. Split from ``sample.py``, which re-exports every name here. No Dagster imports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

_TRUTH_VERSION = 2  # 2 adds scene_class; version 1 files still read (every scene a photo)


# ----------------------------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class SampleTruth:
    """What the sample workdir really contains, keyed by POSIX path relative to the workdir.

    ``scene_of`` lists every good frame (including the unusual ones in ``special``) with its scene id;
    ``bad_files`` lists every file a reader must reject, with what is wrong; ``special`` marks good frames
    that are unusual (``cmyk``, ``grayscale``, ``exif-rotated``) but must decode and dedupe normally.
    Names that are not UTF-8 appear as ``os.fsdecode`` gives them (surrogate escapes), so
    ``Path(workdir, rel_path)`` still opens them on POSIX.
    """

    scene_of: dict[str, str]
    bad_files: dict[str, str]
    special: dict[str, str] = field(default_factory=dict)
    #: scene id -> its class (``photo``, or one of ``lowtex.LOW_TEXTURE_CLASSES``); a scene missing here is a photo
    scene_class: dict[str, str] = field(default_factory=dict)

    def to_json(self, path: Path) -> None:
        """Write the truth as JSON (ASCII-escaped, so surrogate-escaped names survive the round trip).

        Keep it outside the workdir's ``{source}/{category}`` folders: it is not a frame.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": _TRUTH_VERSION,
            "scene_of": self.scene_of,
            "bad_files": self.bad_files,
            "special": self.special,
            "scene_class": self.scene_class,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n", encoding="ascii")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: Path) -> SampleTruth:
        """Read a truth written by :meth:`to_json`."""
        doc = json.loads(Path(path).read_text(encoding="ascii"))
        if doc.get("version") not in (1, _TRUTH_VERSION):
            raise ValueError(f"{path}: unsupported sample truth version {doc.get('version')!r}")
        return cls(
            scene_of=dict(doc["scene_of"]),
            bad_files=dict(doc["bad_files"]),
            special=dict(doc.get("special", {})),
            scene_class=dict(doc.get("scene_class", {})),
        )

    @property
    def scenes(self) -> set[str]:
        """The distinct scene ids."""
        return set(self.scene_of.values())

    def frames_by_scene(self) -> dict[str, list[str]]:
        """Scene id -> its frames' rel_paths (sorted), for tests and reports."""
        out: dict[str, list[str]] = {}
        for rel, scene in sorted(self.scene_of.items()):
            out.setdefault(scene, []).append(rel)
        return out


def scene_photo(scene_id: str) -> str:
    """The photo a scene id was cut from (``"rocket@0,123+320x180"`` -> ``"rocket"``)."""
    return scene_id.split("@", 1)[0]


# ----------------------------------------------------------------------------------------------- score


@dataclass(frozen=True)
class DedupeScore:
    """How well a deduper did on a sample: what it lost (recall) and what it removed (redundancy).

    Both numbers matter: keeping everything has perfect recall and removes nothing; keeping one frame in
    the whole dataset removes everything and loses almost every scene.
    """

    scenes: int
    scenes_kept: int
    redundant_frames: int
    redundant_removed: int

    @property
    def scene_recall(self) -> float:
        """Fraction of scenes with at least one accepted frame (1.0 = no scene lost)."""
        return self.scenes_kept / self.scenes if self.scenes else 1.0

    @property
    def removed_fraction(self) -> float:
        """Fraction of redundant frames (all but one per scene) the deduper rejected (1.0 = all)."""
        return self.redundant_removed / self.redundant_frames if self.redundant_frames else 1.0


def score_dedupe(truth: SampleTruth, accepted: Iterable[str | os.PathLike[str]]) -> DedupeScore:
    """Score the rel_paths a deduper accepted against the truth.

    Redundant frames are the good frames beyond the first of each scene. A scene with ``k`` accepted
    frames keeps ``k - 1`` redundant ones. Accepted paths that are bad files or unknown are ignored (a
    deduper that accepts a bad file is caught by other checks, not by this score); paths given twice count
    once.
    """
    kept_per_scene: dict[str, int] = {}
    for rel in {_as_rel(p) for p in accepted}:
        scene = truth.scene_of.get(rel)
        if scene is not None:
            kept_per_scene[scene] = kept_per_scene.get(scene, 0) + 1
    scenes = len(set(truth.scene_of.values()))
    redundant = len(truth.scene_of) - scenes
    redundant_kept = sum(k - 1 for k in kept_per_scene.values() if k > 1)
    return DedupeScore(
        scenes=scenes,
        scenes_kept=len(kept_per_scene),
        redundant_frames=redundant,
        redundant_removed=redundant - redundant_kept,
    )


def score_by_class(truth: SampleTruth, accepted: Iterable[str | os.PathLike[str]]) -> dict[str, DedupeScore]:
    """:func:`score_dedupe` per scene class (``photo`` and the low-texture classes): a deduper that keeps
    every photo but loses skies must show it, not hide it in an average."""
    accepted = list(accepted)
    by_class: dict[str, dict[str, str]] = {}
    for rel, scene in truth.scene_of.items():
        by_class.setdefault(truth.scene_class.get(scene, "photo"), {})[rel] = scene
    return {cls: score_dedupe(SampleTruth(scene_of=sub, bad_files={}), accepted) for cls, sub in sorted(by_class.items())}


def _as_rel(p: str | os.PathLike[str]) -> str:
    return p if isinstance(p, str) else PurePath(p).as_posix()
