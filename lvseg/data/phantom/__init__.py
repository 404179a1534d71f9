"""A synthetic short-axis cine-MRI phantom: the default data of the demo and of most tests.

:func:`generate_patient` draws a patient's anatomy (:mod:`.anatomy`, :mod:`.heart`), renders its
cine (:mod:`.scene`, :mod:`.render`, :mod:`.kspace`) and labels it (:mod:`.labels`);
:func:`write_phantom` writes patients as Sunnybrook DICOM or ACDC NIfTI (:mod:`.write`), and
:func:`read` reads them back through the real readers (:mod:`.reader`).

>>> patient = generate_patient(0, seed=0, phases=[0], downscale=4)
>>> patient.group, patient.images.shape[0], patient.images.dtype
('N', 1, dtype('float32'))
"""

from __future__ import annotations

from lvseg.data.phantom.anatomy import GROUP_ANATOMY, GROUPS
from lvseg.data.phantom.dataset import patient_records, phantom_dataset
from lvseg.data.phantom.generate import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    LABELLED_PHASES,
    MAX_PATIENTS,
    PHANTOM_VERSION,
    generate_patient,
)
from lvseg.data.phantom.heart import MIN_RADIUS_MM
from lvseg.data.phantom.labels import CONTOUR_OFFSET_PX, CONTOUR_POINTS
from lvseg.data.phantom.overrides import ACQUISITION, CONTRASTS
from lvseg.data.phantom.patient import PHASES, PhantomPatient
from lvseg.data.phantom.reader import (
    default_phantom_dir,
    ensure_default_phantom,
    looks_like,
    read,
    read_manifest,
)
from lvseg.data.phantom.write import (
    ACDC_GROUPS,
    ACDC_LABELS,
    DEFAULT_FORMAT,
    FORMATS,
    MANIFEST,
    SERIES_DESCRIPTION,
    write_phantom,
)

__all__ = [
    "ACDC_GROUPS",
    "ACDC_LABELS",
    "ACQUISITION",
    "CONTOUR_OFFSET_PX",
    "CONTOUR_POINTS",
    "CONTRASTS",
    "DEFAULT_FORMAT",
    "DEFAULT_PATIENTS",
    "DEFAULT_SEED",
    "FORMATS",
    "GROUP_ANATOMY",
    "GROUPS",
    "LABELLED_PHASES",
    "MANIFEST",
    "MAX_PATIENTS",
    "MIN_RADIUS_MM",
    "PHANTOM_VERSION",
    "PHASES",
    "SERIES_DESCRIPTION",
    "PhantomPatient",
    "default_phantom_dir",
    "ensure_default_phantom",
    "generate_patient",
    "looks_like",
    "patient_records",
    "phantom_dataset",
    "read",
    "read_manifest",
    "write_phantom",
]
