"""Every path under ``DATASET_DIR``, built in one place (``docs/design.md``, "The dataset folder").

Other tools rely on these paths (trainers read ``coco/``, the old scripts ``labels.jsonl``), so nothing else
in the package joins a dataset path by hand: it asks a :class:`DatasetLayout`.

    {DATASET_DIR}/
      coco-spec.json, sam-queries.yaml      taxonomy and SAM3 text queries
      images/{dhash}.jpg                    content-addressable store of accepted frames
      tables/{asset}/{category}.parquet     per-frame tables; tables/sam3_labels/.parts/{category}/ in flight
                                            (tables/prompt_trials/.parts/{category}/ for the prompt trials)
      labels.jsonl                          every category's labels (the old tools' file)
      coco/{category}/{split}.json          curated_coco per category
      coco/{split}.json                     coco_dataset: all categories merged
      export/yolo/                          yolo_dataset
      .locks/{name}.lock                    file locks shared by every process writing {name}
      .index/claims/{category}.tsv          dedupe's journal of stored frames not yet in a table
      .index/labels/{category}.jsonl        labels.jsonl's per-category segments (+ {category}.key.json)
      .index/splits.parquet                 split group -> split, per category (sticky splits)
      coco/shards.json                      per split: the per-category files and their counts
      .cache/torchinductor/                 torch.compile's kernels and FX graphs, reused by every run container
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from samantics_dagster.core.dataset.schema import SPLITS, TableName


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    # taxonomy and prompts
    @property
    def spec(self) -> Path:
        return self.root / "coco-spec.json"

    @property
    def queries(self) -> Path:
        return self.root / "sam-queries.yaml"

    # the image store
    @property
    def images(self) -> Path:
        return self.root / "images"

    def image(self, dhash: str) -> Path:
        return self.images / f"{dhash}.jpg"

    # per-frame tables
    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table_dir(self, table: TableName | str) -> Path:
        return self.tables / str(table)

    def table(self, table: TableName | str, category: str) -> Path:
        return self.table_dir(table) / f"{category}.parquet"

    def table_categories(self, table: TableName | str) -> list[str]:
        """Categories with a written table, sorted."""
        folder = self.table_dir(table)
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []

    @property
    def compile_cache(self) -> Path:
        """``torch.compile``'s cache (TORCHINDUCTOR_CACHE_DIR): on the dataset, because it is the one folder every
        run container mounts read-write (the model cache is read-only), so the next run skips the compile."""
        return self.root / ".cache" / "torchinductor"

    def label_parts(self, category: str) -> Path:
        """Batch parts of a labelling run in flight (merged into the table when the run ends)."""
        return parts_dir(self.table(TableName.SAM3_LABELS, category))

    def trial_parts(self, category: str) -> Path:
        """Batch parts of a prompt-trial run in flight (merged into the ``prompt_trials`` table when it ends)."""
        return parts_dir(self.table(TableName.PROMPT_TRIALS, category))

    # dataset-wide files
    @property
    def labels_jsonl(self) -> Path:
        return self.root / "labels.jsonl"

    @property
    def coco(self) -> Path:
        return self.root / "coco"

    def coco_category_dir(self, category: str) -> Path:
        return self.coco / category

    def coco_category(self, category: str, split: str) -> Path:
        return self.coco_category_dir(category) / f"{split}.json"

    def coco_merged(self, split: str) -> Path:
        return self.coco / f"{split}.json"

    def coco_merged_files(self) -> Iterator[Path]:
        """The merged split files that exist, in split order."""
        return (p for p in (self.coco_merged(s) for s in SPLITS) if p.is_file())

    @property
    def exports(self) -> Path:
        return self.root / "export"

    @property
    def yolo(self) -> Path:
        return self.exports / "yolo"

    # coordination between processes
    @property
    def locks(self) -> Path:
        return self.root / ".locks"

    def lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    @property
    def run_leases(self) -> Path:
        """One flock-held lease per live run worker (``core.health.liveness``)."""
        return self.locks / "runs"

    def run_lease(self, run_id: str) -> Path:
        return self.run_leases / f"{run_id}.lease"

    def category_lock(self, category: str) -> Path:
        """Held by the one run writing a category; its owner file says who (``defs/resources/run_guard``)."""
        return self.locks / f"category-{category}.lock"

    def category_owner(self, category: str) -> Path:
        return self.locks / f"category-{category}.owner"

    @property
    def index(self) -> Path:
        return self.root / ".index"

    def claims(self, category: str) -> Path:
        return self.index / "claims" / f"{category}.tsv"

    @property
    def labels_segments(self) -> Path:
        """The folder of labels.jsonl's per-category segments and their sidecar keys."""
        return self.index / "labels"

    def labels_segment(self, category: str) -> Path:
        """One category's share of labels.jsonl (the file is these segments concatenated in category order)."""
        return self.labels_segments / f"{category}.jsonl"

    def labels_segment_key(self, category: str) -> Path:
        """The sam3_labels table fingerprint (size, mtime_ns) its segment was built from."""
        return self.labels_segments / f"{category}.key.json"

    @property
    def labels_jsonl_key(self) -> Path:
        """Which segments (their fingerprints) labels.jsonl was last concatenated from, and its own fingerprint."""
        return self.index / "labels.jsonl.key.json"

    def labels_segment_categories(self) -> list[str]:
        folder = self.labels_segments
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []

    @property
    def split_index(self) -> Path:
        """Video (split group) -> split -> category of every curated frame: sticky splits without every table."""
        return self.index / "splits.parquet"

    @property
    def label_quality(self) -> Path:
        """label_quality's report: per class, the PR curve from review and the suggested threshold."""
        return self.root / "quality" / "label_quality.json"

    @property
    def coco_shards(self) -> Path:
        """coco_dataset's manifest of the per-category files per split, with their counts (for trainers)."""
        return self.coco / "shards.json"


def parts_dir(table_path: Path) -> Path:
    """Where the parts of a table written in batches live until merged: ``{table dir}/.parts/{category}/``."""
    return table_path.parent / ".parts" / table_path.stem


@dataclass(frozen=True)
class YoloLayout:
    """The YOLO-seg tree Ultralytics reads (``export/yolo/``, or a staging copy of it being built)."""

    root: Path

    @property
    def data_yaml(self) -> Path:
        return self.root / "data.yaml"

    @property
    def classes_json(self) -> Path:
        """Our category id -> Ultralytics' contiguous class index."""
        return self.root / "classes.json"

    @property
    def source_json(self) -> Path:
        """The COCO files (size, mtime_ns) and settings the tree was built from: an unchanged source is not
        traced again (at scale the merged files wait for the full export, ``core.export.shards``)."""
        return self.root / "source.json"

    def images(self, split: str) -> Path:
        return self.root / "images" / split

    def labels(self, split: str) -> Path:
        return self.root / "labels" / split

    def label(self, split: str, stem: str) -> Path:
        return self.labels(split) / f"{stem}.txt"

    @staticmethod
    def images_key(split: str) -> str:
        """A split's image folder as data.yaml names it (relative to the yaml's folder)."""
        return f"images/{split}"
