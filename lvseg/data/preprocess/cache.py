"""The preprocessing cache: every record preprocessed once into memory-mapped ``.npy`` stacks,
so a training epoch slices arrays instead of decoding DICOM or PNG files.

:func:`build_cache` stores, per record, the plan's ``context_size`` square around the heart
(or the image centre): every jittered crop of every epoch is a slice of it. :class:`CachedSlices`
opens a cache and gathers batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lvseg.atomic import atomic_directory
from lvseg.data.preprocess.planning import PREPROCESS_VERSION, PreprocessPlan, ProgressCallback
from lvseg.data.preprocess.transforms import Centre, preprocess_record, stack_masks
from lvseg.data.records import Geometry, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.progress import track

if TYPE_CHECKING:
    import torch

CACHE_IMAGES, CACHE_MASKS, CACHE_LABELLED, CACHE_INDEX = (
    "images.npy",
    "masks.npy",
    "labelled.npy",
    "index.json",
)


def _file_stamp(path: str) -> list[Any] | None:
    try:
        status = Path(path).stat()
    except (OSError, ValueError):
        return None
    if not Path(path).is_file():
        return None
    return [str(Path(path).resolve()), status.st_size, status.st_mtime_ns]


def _entry(record: SliceRecord) -> dict[str, Any]:
    """The metadata a cache stores per record (and hashes into its key)."""
    return {
        "key": record.key,
        "patient_id": record.patient_id,
        "source": record.source,
        "slice_index": record.slice_index,
        "phase_index": record.phase_index,
        "phase": record.phase,
        "group": record.group,
        "pixel_spacing_mm": record.pixel_spacing_mm,
        "original_shape": list(record.image.shape),
        "volume_index": record.geometry.volume_index,
        "structures": list(record.structures),
    }


def cache_key(
    records: Sequence[SliceRecord], plan: PreprocessPlan, centre: Centre = "heart"
) -> str:
    """A hash of the sources (path, size, mtime), record metadata, the plan and the version.

    A record whose source is not a file (a phantom made in memory) contributes a hash of its
    arrays instead, so its cache still follows its content.
    """
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"version": PREPROCESS_VERSION, "plan": plan.identity(), "centre": centre},
            sort_keys=True,
        ).encode()
    )
    for record in records:
        stamps = [_file_stamp(p) for p in (record.source, *record.annotation_sources)]
        digest.update(json.dumps([_entry(record), stamps], sort_keys=True, default=str).encode())
        if stamps[0] is None:
            digest.update(np.ascontiguousarray(record.image).tobytes())
            for name in sorted(record.masks):
                digest.update(name.encode())
                digest.update(np.packbits(record.masks[name]).tobytes())
    return digest.hexdigest()


@dataclass
class Batch:
    """A training batch as torch tensors: images (B,1,S,S) float32, masks (B,C,S,S) float32,
    labelled (B,C) bool, indices (B,) int64 (positions in the cache)."""

    images: torch.Tensor
    masks: torch.Tensor
    labelled: torch.Tensor
    indices: torch.Tensor


class CachedSlices:
    """Preprocessed context regions of a dataset, memory-mapped from one cache folder.

    ``images`` is (N, R, R) float32 and ``masks`` (N, C, R, R) uint8 with R the plan's
    ``context_size``; ``labelled`` is (N, C) bool; ``entries`` holds each record's metadata
    and ``context_box`` (the region's box in resampled pixels). A crop with offset (dr, dc) is
    ``[J + dr : J + dr + S]`` per axis, J the jitter and S the crop size.
    """

    def __init__(self, path: str | Path, *, in_memory: bool = False) -> None:
        self.path = Path(path)
        try:
            index = json.loads((self.path / CACHE_INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InvalidInputError(self.path, f"not a preprocessing cache ({error})") from None
        self.key: str = index["key"]
        self.centre: str = index["centre"]
        self.plan = PreprocessPlan.from_dict(index["plan"])
        self.entries: list[dict[str, Any]] = index["entries"]
        mode = None if in_memory else "r"
        self.images: np.ndarray = np.load(self.path / CACHE_IMAGES, mmap_mode=mode)
        self.masks: np.ndarray = np.load(self.path / CACHE_MASKS, mmap_mode=mode)
        self.labelled: np.ndarray = np.load(self.path / CACHE_LABELLED)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def crop_size(self) -> int:
        return self.plan.crop_size

    @property
    def jitter_px(self) -> int:
        return self.plan.jitter_px

    @property
    def margin_px(self) -> int:
        return self.plan.margin_px

    @property
    def structures(self) -> tuple[str, ...]:
        return self.plan.structures

    @property
    def patient_ids(self) -> list[str]:
        return [entry["patient_id"] for entry in self.entries]

    def indices_of(self, patients: Sequence[str]) -> np.ndarray:
        """Cache positions of the given patients' slices (for patient-level splits)."""
        wanted = set(patients)
        return np.array(
            [i for i, entry in enumerate(self.entries) if entry["patient_id"] in wanted], np.int64
        )

    def crop_box(self, index: int, offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
        """The crop's box in resampled pixels of the source record (for :class:`Geometry`)."""
        r0, _, c0, _ = self.entries[index]["context_box"]
        row, col = r0 + self.margin_px + offset[0], c0 + self.margin_px + offset[1]
        return row, row + self.crop_size, col, col + self.crop_size

    def geometry(self, index: int, offset: tuple[int, int] = (0, 0)) -> Geometry:
        entry = self.entries[index]
        spacing = entry["pixel_spacing_mm"]
        return Geometry(
            original_shape=tuple(entry["original_shape"]),
            source_pixel_spacing_mm=tuple(spacing) if spacing is not None else None,
            volume_index=entry["volume_index"],
            zoom=tuple(entry["zoom"]),
            crop_box=self.crop_box(index, offset),
        )

    def crop(self, index: int, offset: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """The (S, S) float32 image and (C, S, S) uint8 masks of one slice at ``offset``."""
        self._check_offset(offset)
        r, c = self.margin_px + offset[0], self.margin_px + offset[1]
        s = self.crop_size
        return (
            np.asarray(self.images[index, r : r + s, c : c + s]),
            np.asarray(self.masks[index, :, r : r + s, c : c + s]),
        )

    def _check_offset(self, offset: tuple[int, int]) -> None:
        if max(abs(offset[0]), abs(offset[1])) > self.margin_px:
            raise ValueError(f"offset {offset} is beyond the cached margin of {self.margin_px} px")

    def random_offsets(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` uniform (row, col) offsets within the cached jitter, as an (n, 2) array."""
        j = self.jitter_px
        return rng.integers(-j, j + 1, size=(count, 2)) if j else np.zeros((count, 2), np.int64)

    def far_offsets(self, offsets: np.ndarray, share: float, rng: np.random.Generator) -> None:
        """Move a ``share`` of ``offsets`` (in place) anywhere within the plan's reach: crops
        with the heart at their edge or half out of them, and what lies around it."""
        reach = self.plan.reach_px
        if share <= 0 or reach <= 0 or not len(offsets):
            return
        far = rng.random(len(offsets)) < share
        offsets[far] = rng.integers(-reach, reach + 1, size=(int(far.sum()), 2))

    def batch(
        self, indices: Sequence[int] | np.ndarray, offsets: np.ndarray | None = None
    ) -> Batch:
        """Gather a batch by slicing the memory maps (no decoding, no resampling)."""
        import torch

        indices = np.asarray(indices, np.int64)
        if offsets is None:
            offsets = np.zeros((len(indices), 2), np.int64)
        s, j, channels = self.crop_size, self.margin_px, self.masks.shape[1]
        images = np.empty((len(indices), 1, s, s), np.float32)
        masks = np.empty((len(indices), channels, s, s), np.uint8)
        if np.abs(offsets).max(initial=0) > j:
            raise ValueError(f"an offset is beyond the cached margin of {j} px")
        for k, (index, (dr, dc)) in enumerate(zip(indices, offsets, strict=True)):
            r, c = j + dr, j + dc
            images[k, 0] = self.images[index, r : r + s, c : c + s]
            masks[k] = self.masks[index, :, r : r + s, c : c + s]
        return Batch(
            images=torch.from_numpy(images),
            masks=torch.from_numpy(masks).float(),
            labelled=torch.from_numpy(self.labelled[indices]),
            indices=torch.from_numpy(indices),
        )

    def batches(
        self,
        batch_size: int,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        shuffle: bool = True,
        jitter: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """One epoch of batches; order and offsets depend only on (seed, epoch)."""
        order = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        rng = np.random.default_rng([seed, epoch])
        if shuffle:
            order = rng.permutation(order)
        offsets = (
            self.random_offsets(len(order), rng) if jitter else np.zeros((len(order), 2), np.int64)
        )
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size], offsets[start : start + batch_size])


def build_cache(
    records: Sequence[SliceRecord],
    plan: PreprocessPlan,
    cache_dir: str | Path,
    *,
    centre: Centre = "heart",
    rebuild: bool = False,
    in_memory: bool = False,
    progress: ProgressCallback | None = None,
) -> CachedSlices:
    """Preprocess every record once into ``cache_dir/<key>/`` and open it; reuse it if present.

    The folder is built beside its final place and renamed when complete
    (:func:`lvseg.atomic.atomic_directory`), so a crash never leaves a half cache. The
    stored region is ``plan.context_size`` square around the heart, so every jittered crop of
    every epoch is a slice of it.
    """
    records = list(records)
    if not records:
        raise InvalidInputError(None, "cannot cache an empty dataset")
    key = cache_key(records, plan, centre)
    folder = Path(cache_dir) / key[:24]
    if not rebuild and (folder / CACHE_INDEX).is_file():
        try:
            cached = CachedSlices(folder, in_memory=in_memory)
        except (InvalidInputError, OSError, ValueError, KeyError):
            cached = None
        if cached is not None and cached.key == key:
            return cached
    size, channels = plan.context_size, len(plan.structures)
    with atomic_directory(folder, overwrite=True) as temporary:
        images = np.lib.format.open_memmap(
            temporary / CACHE_IMAGES, mode="w+", dtype=np.float32, shape=(len(records), size, size)
        )
        masks = np.lib.format.open_memmap(
            temporary / CACHE_MASKS,
            mode="w+",
            dtype=np.uint8,
            shape=(len(records), channels, size, size),
        )
        labelled = np.zeros((len(records), channels), bool)
        entries = []
        for i, record in enumerate(track(records, "preprocess"), start=0):
            region = preprocess_record(record, plan, centre=centre, size=size)
            images[i] = region.image
            masks[i], labelled[i] = stack_masks(region, plan.structures)
            entry = _entry(record)
            entry["zoom"] = list(region.geometry.zoom)
            entry["resampled_spacing_mm"] = region.pixel_spacing_mm
            entry["context_box"] = list(region.geometry.crop_box or ())
            entries.append(entry)
            if progress is not None:
                progress(i + 1, len(records))
        images.flush()
        masks.flush()
        del images, masks
        np.save(temporary / CACHE_LABELLED, labelled)
        index = {
            "key": key,
            "version": PREPROCESS_VERSION,
            "centre": centre,
            "plan": plan.to_dict(),
            "entries": entries,
        }
        (temporary / CACHE_INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    return CachedSlices(folder, in_memory=in_memory)
