"""Plan preprocessing from the data, apply it to records, and cache the result for training.

Three steps, as nnU-Net does them: :func:`fingerprint` measures a dataset and
:func:`plan_preprocessing` turns that into a :class:`PreprocessPlan` (:mod:`.planning`);
:func:`preprocess_record` resamples, normalises and crops one record (:mod:`.transforms`, with
the crop boxes of :mod:`.regions`); :func:`build_cache` does it once for a whole dataset and
stores memory-mapped stacks that training slices (:mod:`.cache`).

>>> import numpy as np
>>> from lvseg.data.records import Geometry, SliceRecord
>>> lv = np.zeros((64, 64), bool); lv[20:40, 24:44] = True
>>> record = SliceRecord(image=np.random.rand(64, 64).astype(np.float32), masks={"lv": lv},
...                      patient_id="P1", source="p1.png", geometry=Geometry((64, 64)))
>>> plan = plan_preprocessing(fingerprint([record]))
>>> plan.crop_size, plan.target_spacing_mm
(64, None)
>>> preprocess_record(record, plan).image.shape
(64, 64)
"""

from lvseg.data.preprocess.cache import (
    CACHE_IMAGES,
    CACHE_INDEX,
    CACHE_LABELLED,
    CACHE_MASKS,
    Batch,
    CachedSlices,
    build_cache,
    cache_key,
)
from lvseg.data.preprocess.planning import (
    FINGERPRINT_VERSION,
    PREPROCESS_VERSION,
    Fingerprint,
    Intensity,
    Measured,
    PreprocessPlan,
    ProgressCallback,
    Stats,
    fingerprint,
    plan_preprocessing,
)
from lvseg.data.preprocess.regions import (
    crop_box_at,
    crop_padded,
    heart_centre,
    heart_mask,
    image_centre,
)
from lvseg.data.preprocess.transforms import (
    Centre,
    crop_record,
    normalise_intensity,
    preprocess_record,
    resample_and_normalise,
    resample_record,
    stack_masks,
    to_source_grid,
    with_spacing,
)

__all__ = [
    "CACHE_IMAGES",
    "CACHE_INDEX",
    "CACHE_LABELLED",
    "CACHE_MASKS",
    "FINGERPRINT_VERSION",
    "PREPROCESS_VERSION",
    "Batch",
    "CachedSlices",
    "Centre",
    "Fingerprint",
    "Intensity",
    "Measured",
    "PreprocessPlan",
    "ProgressCallback",
    "Stats",
    "build_cache",
    "cache_key",
    "crop_box_at",
    "crop_padded",
    "crop_record",
    "fingerprint",
    "heart_centre",
    "heart_mask",
    "image_centre",
    "normalise_intensity",
    "plan_preprocessing",
    "preprocess_record",
    "resample_and_normalise",
    "resample_record",
    "stack_masks",
    "to_source_grid",
    "with_spacing",
]
