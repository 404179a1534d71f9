"""A synthetic short-axis cine-MRI phantom: the default data of the demo and of most tests.

Every synthetic patient is drawn from a NumPy generator seeded with ``(seed, patient index)``, so
patient *k* is the same whatever the number of patients, and the same seed writes the same bytes.

**Anatomy.** The left ventricle is a truncated prolate spheroid along the slice axis: the
endocardial and epicardial radii shrink from base to apex (the epicardium reaches further, so the
most apical slices show a myocardial cap or nothing). In-plane, every boundary is a radius function
of the angle around the LV centre with low-order Fourier perturbations, so each patient has its own
irregular, slightly elliptic LV and wall-thickness pattern. The right ventricle is a crescent
wrapping the septum (its width tapers to zero at the insertion points and toward the apex), with a
thin free wall; epicardial fat and a dark pericardial line surround the heart. Papillary muscles
and trabeculations are dark blobs inside the bright blood pool, and the pool brightens only
gradually inward from the free wall over several mm (trabeculated, slow-flowing periphery; the
septum is smooth), as the intensity profiles across the expert contours of the Sunnybrook images
show; by Sunnybrook convention all of it counts as LV blood pool in the masks. Around the heart:
body outline with bright subcutaneous fat, chest wall muscle, dark lungs with vessels, liver,
stomach, spine, descending aorta, arms sometimes, and organ "clutter" (bowel, vessels), each
clutter structure an ellipsoid that appears, grows, moves and vanishes over a few slices (as
cylinders through the whole stack, bright ones outvoted the LV when predict located the heart);
basal slices show the left atrium and aortic root (bright blood that is not LV).

**Motion.** 20 phases from end-diastole (phase 0) to end-systole (phase ``es_phase``) and back,
following a contraction curve (fast ejection, rapid filling, diastasis, atrial kick). The cavity
shrinks by a factor chosen from the ejection fraction, the base descends toward the apex, and the
myocardial area is conserved per angle (``Re^2 - Ri^2`` scaled by the long-axis shortening), so the
wall thickens in systole. Groups (:data:`GROUPS`) follow the Sunnybrook ones: ``N`` normal,
``HF-NI`` dilated, thin-walled, globally hypokinetic (low EF), ``HF-I`` dilated with an akinetic
thinned infarct sector, ``HYP`` thick wall (sometimes asymmetric septal) and small cavity. Patient
*k* is in group ``GROUPS[k % 4]`` so every split can be stratified.

**Appearance** (balanced SSFP cine): bright blood and fat, dark myocardium, intermediate organs,
per-patient random contrast (tissue values and a gamma), a smooth texture, a surface-coil
sensitivity (bright anterior chest wall), k-space truncation with an anisotropic acquisition matrix
(blur, partial volume and Gibbs ringing), complex Gaussian noise added in k-space so the magnitude
image has Rician noise, and sometimes a zeroed reconstruction circle or curved field-of-view edges
as in the Sunnybrook scans, and the blur of the slice profile (the heart is also rendered a third
of the slice thickness either side). Field of view, matrix (192-256), pixel spacing (1.2-2.0 mm),
heart position, in-plane orientation (mostly the standard view, sometimes turned any way) and slice
thickness vary between patients.

**Labels are contours first.** The endocardium and epicardium are polygons in the coordinates of
Sunnybrook contour files (corner origin, see :data:`CONTOUR_OFFSET_PX`; rounded to 0.01 px); the
LV and myocardium masks are those polygons filled by :func:`lvseg.data.contours.fill_contour`, so
reading a written phantom back through the Sunnybrook reader gives the very same masks, placed on
the anatomy as the expert masks are on real images. The RV mask is rasterised directly.

>>> patient = generate_patient(0, seed=0, phases=[0], downscale=4)
>>> patient.group, patient.images.shape[0], patient.images.dtype
('N', 1, dtype('float32'))
"""

from __future__ import annotations

from lvseg.data.phantom.anatomy import ACQUISITION, CONTRASTS, GROUP_ANATOMY, GROUPS
from lvseg.data.phantom.generate import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    LABELLED_PHASES,
    MAX_PATIENTS,
    PHANTOM_VERSION,
    generate_patient,
    patient_records,
    phantom_dataset,
)
from lvseg.data.phantom.heart import MIN_RADIUS_MM
from lvseg.data.phantom.patient import PHASES, PhantomPatient
from lvseg.data.phantom.reader import (
    default_phantom_dir,
    ensure_default_phantom,
    looks_like,
    read,
    read_manifest,
)
from lvseg.data.phantom.render import CONTOUR_OFFSET_PX, CONTOUR_POINTS
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
