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

import gzip
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sfft

from lvseg import atomic
from lvseg.cache import cache_dir
from lvseg.data import contours
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV, Dataset, Geometry, SliceRecord
from lvseg.errors import InvalidInputError

PHANTOM_VERSION = "2"
"""Bumped whenever the same seed would give different images; part of the cache folder name."""
PHASES = 20
GROUPS = ("N", "HF-I", "HF-NI", "HYP")
ACDC_GROUPS = {"N": "NOR", "HF-I": "MINF", "HF-NI": "DCM", "HYP": "HCM"}
"""Phantom group -> the ACDC ``Group:`` written in NIfTI ``Info.cfg``."""
FORMATS = ("dicom", "nifti")
LABELLED_PHASES = ("ed_es", "all")
MANIFEST = "phantom.json"
DEFAULT_PATIENTS = 8
DEFAULT_SEED = 0
DEFAULT_FORMAT = "dicom"
MAX_PATIENTS = 9999
ACQUISITION = {
    "spacing": "pixel spacing in mm (the matrix is kept, so the field of view changes)",
    "thickness": "slice thickness in mm (the partial volume of the slice profile)",
    "rotation": "in-plane rotation of the anatomy in radians (0: the standard view)",
    "gamma": "the contrast curve: tissue values to the power gamma",
    "noise": "noise level in k-space (0.015-0.06 as drawn)",
    "k_fraction": "(rows, cols) fraction of k-space acquired (blur, Gibbs ringing)",
    "k_taper": "apodisation of the k-space edge (0: a hard cut)",
    "fov_kind": "none, circle or curved (the reconstruction's field-of-view mask)",
    "heart_offset_mm": "(down, right) of the LV centre from the image centre in mm (the whole "
    "thorax moves with it, as when the field of view is placed off the heart)",
}
"""The acquisition and appearance draws ``generate_patient(acquisition=...)`` can fix, so one
patient's anatomy can be seen through several acquisitions (the domain-shift benchmark)."""
CONTOUR_POINTS = 96
CONTOUR_OFFSET_PX = 0.5
"""Added to contour coordinates: Sunnybrook contour files count from the top-left *corner* of the
image (OsiriX convention), so a boundary at pixel-centre coordinates (x, y) is written as
(x + 0.5, y + 0.5). Measured on the 96 expert i-contours of ``sunnybrook-dicom``: filled with
:func:`~lvseg.data.contours.fill_contour`, they fit the image's blood-pool edge best unshifted,
while centre-convention phantom boundaries needed +0.6 px; with this offset phantom and real masks
sit on the anatomy the same way (Pillow's fill of a smooth polygon lands 0.5 px up-left)."""
MIN_RADIUS_MM = 2.0
"""An LV cavity (or epicardium) with a mean radius below this is absent on the slice."""
SERIES_DESCRIPTION = "CINE SAX lvseg phantom"
ACDC_LABELS = {RV: 1, MYOCARDIUM: 2, LV: 3}
GROUP_ANATOMY = {
    # uniform ranges: ED endocardial radius at the equator (mm), ED wall thickness (mm), ejection
    # fraction, long axis base->endocardial apex (mm), systolic descent of the base (mm)
    "N": {
        "lv_radius": (22, 28),
        "wall": (8, 11.5),
        "ef": (0.55, 0.70),
        "long_axis": (75, 92),
        "descent": (8, 14),
    },
    "HF-NI": {
        "lv_radius": (29, 38),
        "wall": (6, 8.5),
        "ef": (0.12, 0.35),
        "long_axis": (85, 105),
        "descent": (3, 8),
    },
    "HF-I": {
        "lv_radius": (27, 36),
        "wall": (7, 10),
        "ef": (0.18, 0.40),
        "long_axis": (82, 102),
        "descent": (4, 9),
    },
    "HYP": {
        "lv_radius": (17, 25),
        "wall": (13, 18),
        "ef": (0.55, 0.78),
        "long_axis": (70, 88),
        "descent": (6, 10),
    },
}


# --------------------------------------------------------------------------------------------
# Public data type


@dataclass
class PhantomPatient:
    """One synthetic patient: the cine, its labels and its acquisition geometry.

    ``images`` is float32 ``[phase, slice, rows, cols]`` holding the integer intensities written
    to DICOM/NIfTI; ``lv``, ``myocardium`` and ``rv`` are boolean masks of the same shape. Row
    ``i`` of the phase axis is cardiac phase ``phase_indices[i]`` (all 20 unless ``phases`` was
    given). ``endocardium`` / ``epicardium`` map ``(phase, slice)`` to the (x, y) contour polygon
    where that surface cuts the slice. Slice 0 is the most basal.
    """

    index: int
    seed: int
    patient_id: str
    original_id: str
    group: str
    images: np.ndarray
    lv: np.ndarray
    myocardium: np.ndarray
    rv: np.ndarray
    phase_indices: tuple[int, ...]
    endocardium: dict[tuple[int, int], np.ndarray]
    epicardium: dict[tuple[int, int], np.ndarray]
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    slice_spacing_mm: float
    slice_positions_mm: tuple[float, ...]
    image_positions_mm: tuple[tuple[float, float, float], ...]
    image_orientation: tuple[float, float, float, float, float, float]
    trigger_times_ms: tuple[float, ...]
    heart_rate_bpm: int
    ed_phase: int
    es_phase: int
    ejection_fraction: float
    """The nominal EF the anatomy was drawn for (the masks give the measured one)."""
    height_cm: float
    weight_kg: float
    downscale: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def slices(self) -> int:
        return int(self.images.shape[1])

    def row(self, phase: int) -> int:
        """The position of cardiac phase ``phase`` on the phase axis of the arrays."""
        try:
            return self.phase_indices.index(phase)
        except ValueError:
            raise InvalidInputError(None, f"phase {phase} was not rendered") from None

    def instance_number(self, slice_index: int, phase: int) -> int:
        """Sunnybrook/DICOM instance number: ``slice * 20 + phase + 1``."""
        return slice_index * PHASES + phase + 1

    def affine(self) -> np.ndarray:
        """NIfTI (RAS+) voxel-to-world matrix for volumes indexed ``[col, row, slice]``."""
        return _nifti_affine(self)

    def label_volumes_ml(self) -> tuple[float, float] | None:
        """(EDV, ESV) of the LV masks by disc summation (area x slice spacing), as ``lvseg
        predict`` measures a study; None unless both ED and ES were rendered."""
        if not {self.ed_phase, self.es_phase} <= set(self.phase_indices):
            return None
        voxel_ml = float(np.prod(self.pixel_spacing_mm)) * self.slice_spacing_mm / 1000.0
        ed, es = (
            float(self.lv[self.row(p)].sum()) * voxel_ml for p in (self.ed_phase, self.es_phase)
        )
        return ed, es


# --------------------------------------------------------------------------------------------
# Per-patient parameters


@dataclass
class _Blob:
    """A perturbed, rotated ellipse in body coordinates (mm), with a tissue value."""

    centre: tuple[float, float]
    axes: tuple[float, float]
    angle: float
    harmonics: tuple[tuple[int, float, float], ...]
    value: float
    rim: float = 0.0
    """Thickness (mm) of a dark outline, as bSSFP draws at fat/water and organ boundaries."""
    depth: tuple[float, float, float, float] | None = None
    """Where along the long axis the structure lies: (centre mm, half extent mm, drift u and v
    in mm per mm): an ellipsoid that grows, shrinks and moves from slice to slice, as bowel,
    stomach and vessels do. None: a cylinder through every slice (lungs, liver, spine, aorta)."""


@dataclass
class _Anatomy:
    group: str
    # acquisition
    rows: int
    cols: int
    spacing: float
    thickness: float
    slice_spacing: float
    z_slices: np.ndarray
    heart_px: tuple[float, float]  # LV centre (row, col) in pixels at z = 0, full resolution
    rotation: float
    drift: tuple[float, float]
    # left ventricle
    lv_radius: float
    wall: float
    long_axis: float
    apex_cap: float
    equator: float
    ef: float
    cavity_scale_es: float
    base_descent: float
    es_phase: int
    endo_base: np.ndarray  # (K, 2) Fourier cos/sin coefficients, harmonics 1..K
    endo_apex: np.ndarray
    thick_coef: np.ndarray
    infarct: tuple[float, float, float, float] | None  # angle, half width, zeta0, zeta1
    septal_boost: float
    # right ventricle and surroundings of the heart
    rv_angle: float
    rv_half_width: float
    rv_power: float
    rv_width: float
    rv_wall: float
    rv_extent: float
    rv_contraction: float
    fat_coef: np.ndarray
    fat_mean: float
    papillary: tuple[tuple[float, float, float], ...]  # angle, radius mm, second-head weight
    trabecular_depth: float  # mm over which the blood pool brightens inward from the wall, at ED
    trabecular_coef: np.ndarray  # harmonics 3..16 of its jagged inner edge
    trabecular_power: float  # shape of that ramp (< 1: quick, > 1: slow)
    trabeculae: tuple[tuple[float, float, float], ...]  # angle, radius mm, zeta
    la_angle: float
    la_radius: float
    aortic_root_angle: float
    aortic_root_radius: float
    # thorax (static blobs, in body coordinates with the LV centre at the origin)
    body: _Blob
    subcutaneous_fat: float
    chest_muscle: float
    inside_cavity: list[_Blob]
    arms: list[_Blob]
    coils: list[tuple[float, float, float, float]]  # u, v, weight, decay length mm
    # appearance
    values: dict[str, float]
    gamma: float
    texture: float
    noise: float
    k_fraction: tuple[float, float]
    k_taper: float
    fov_kind: str
    fov_params: tuple[float, float, float]
    scale: float
    heart_rate: int
    height: float
    weight: float
    orientation: np.ndarray  # 3x3: row direction, column direction, normal (LPS)
    heart_world: np.ndarray
    position_offset: float


def _sample_anatomy(rng: np.random.Generator, group: str) -> _Anatomy:
    """Draw one patient's anatomy, motion, appearance and acquisition."""
    u = rng.uniform
    # --- acquisition: matrix, field of view, pixel spacing, slices
    cols = int(rng.choice([192, 208, 224, 240, 256]))
    rows = cols if u() < 0.7 else cols - 16 * int(rng.integers(1, 4))
    fov = u(290.0, 400.0)
    spacing = round(float(np.clip(fov / cols, 1.2, 2.0)), 4)
    thickness = float(rng.choice([6.0, 7.0, 8.0, 8.0, 10.0, 10.0]))
    slice_spacing = thickness + float(rng.choice([0.0, 0.0, 1.0, 2.0]))
    # in-plane orientation: mostly the standard view (RV on the left), but scanners and operators
    # also deliver it turned any way (one Sunnybrook patient has the RV below the LV)
    rotation = u(-0.4, 0.4) if u() < 0.7 else u(-math.pi, math.pi)
    heart_px = (
        rows / 2 - 0.5 + u(-16.0, 14.0) / spacing,
        cols / 2 - 0.5 + u(-10.0, 20.0) / spacing,
    )
    drift = (u(-0.12, 0.12), u(-0.12, 0.12))

    # --- left ventricle by group
    ranges = GROUP_ANATOMY[group]
    lv_radius, wall, ef, long_axis, descent = (
        u(*ranges[name]) for name in ("lv_radius", "wall", "ef", "long_axis", "descent")
    )
    apex_cap = wall * u(0.7, 1.1)
    equator = u(0.15, 0.3) * long_axis
    # Cavity area ratio so that volume ratio ~ (1 - EF) given the long-axis shortening.
    area_ratio = (1.0 - ef) * long_axis / (long_axis - descent)
    cavity_scale_es = float(np.sqrt(np.clip(area_ratio, 0.04, 0.94)))
    es_phase = int(rng.integers(6, 10)) if group in ("N", "HYP") else int(rng.integers(7, 11))

    harmonics = 4
    spread = np.array([0.025, 0.06, 0.03, 0.015])[:harmonics]
    endo_base = rng.normal(0.0, 1.0, (harmonics, 2)) * spread[:, None]
    endo_apex = endo_base * 0.5 + rng.normal(0.0, 1.0, (harmonics, 2)) * spread[:, None] * 0.7
    thick_coef = rng.normal(0.0, 1.0, (3, 2)) * np.array([0.08, 0.06, 0.04])[:, None]
    infarct = None
    if group == "HF-I":
        zeta0 = u(0.1, 0.5)
        infarct = (u(-math.pi, math.pi), u(0.5, 1.0), zeta0, min(1.05, zeta0 + u(0.4, 0.8)))
    septal_boost = u(0.15, 0.45) if group == "HYP" and u() < 0.6 else 0.0

    # --- right ventricle, fat, papillary muscles, base
    rv_angle = math.pi + u(-0.7, 0.3)  # left of the LV on screen, a little anterior
    rv_power = u(0.5, 1.5)  # crescent profile: flat and round (< 1) to pointed (> 1)
    rv_half_width = u(1.0, 1.5)
    rv_width = u(16, 32) * (1.2 if group.startswith("HF") else 1.0)
    rv_wall = u(2.0, 3.5)
    rv_extent = u(0.75, 0.95)
    rv_contraction = u(0.3, 0.5) if group in ("N", "HYP") else u(0.1, 0.35)
    fat_coef = rng.normal(0.0, 1.0, (4, 2)) * np.array([1.5, 1.2, 0.8, 0.5])[:, None]
    fat_mean = u(-1.0, 2.5)
    papillary_scale = 1.3 if group == "HYP" else 1.0
    papillary = (
        (u(-1.0, -0.4), u(2.5, 6.0) * papillary_scale, u(0.0, 1.0)),
        (u(1.6, 2.3), u(2.5, 6.0) * papillary_scale, u(0.0, 1.0)),
    )
    # Trabeculation, papillary bases, slow flow near the wall and the slice's partial volume make
    # the pool brighten gradually inward over several mm (measured on the Sunnybrook images).
    trabecular_depth = u(3.0, 9.0) * (1.2 if group.startswith("HF") else 1.0)
    trabecular_power = u(0.8, 1.8)
    trabecular_coef = rng.normal(0.0, 1.0, (14, 2)) * np.linspace(0.16, 0.05, 14)[:, None]
    trabeculae = tuple(  # small dark spots along the free wall (away from the septum)
        (rv_angle + math.pi + u(-2.0, 2.0), u(0.7, 1.8), u(0.15, 1.0))
        for _ in range(int(rng.integers(4, 14)))
    )
    la_angle = math.pi / 2 + u(-0.5, 0.3)
    la_radius = u(16, 26) * (1.2 if group.startswith("HF") else 1.0)
    aortic_root_angle = -math.pi / 2 - u(0.3, 1.0)
    aortic_root_radius = u(10, 14)

    # --- thorax in body coordinates (mm, +u = screen right, +v = screen down, LV centre = 0)
    body_b = u(125, 175)
    anterior_gap = u(75, 125)  # LV centre to the anterior skin
    body = _Blob(  # its centre lies posterior (screen down) of the heart
        centre=(u(-20, 35), body_b - anterior_gap),
        axes=(u(185, 260), body_b),
        angle=u(-0.35, 0.35),
        harmonics=_harmonics(rng, 4, 0.03),
        value=0.0,
    )
    subcutaneous_fat = u(6, 28)
    chest_muscle = u(8, 25)
    inside_cavity: list[_Blob] = []
    # lungs: left lung lateral (screen right), right lung beyond the RV (screen left, anterior)
    inside_cavity.append(
        _Blob(
            (u(55, 85), u(-10, 30)),
            (u(40, 65), u(55, 90)),
            u(-0.6, 0.6),
            _harmonics(rng, 4, 0.06),
            0.0,
        )
    )
    inside_cavity.append(
        _Blob(
            (u(-95, -60), u(-40, 0)),
            (u(30, 55), u(50, 85)),
            u(-0.6, 0.6),
            _harmonics(rng, 4, 0.06),
            0.0,
        )
    )
    # liver (screen lower left), stomach (lower right), spine and descending aorta (posterior)
    inside_cavity.append(
        _Blob(
            (u(-75, -25), u(55, 100)),
            (u(55, 95), u(40, 70)),
            u(-0.5, 0.5),
            _harmonics(rng, 3, 0.05),
            0.0,
        )
    )
    inside_cavity.append(
        _Blob(
            (u(25, 80), u(60, 105)),
            (u(22, 55), u(18, 45)),
            u(-1.0, 1.0),
            _harmonics(rng, 3, 0.08),
            0.0,
        )
    )
    aorta_centre = (u(10, 45), u(52, 80))
    spine_centre = (aorta_centre[0] + u(-45, -25), aorta_centre[1] + u(8, 25))
    inside_cavity.append(_Blob(spine_centre, (u(14, 19),) * 2, 0.0, _harmonics(rng, 3, 0.05), 0.0))
    inside_cavity.append(_Blob(aorta_centre, (u(9, 13),) * 2, 0.0, (), 0.0, rim=u(1.0, 2.5)))
    arms = []
    for side in (-1.0, 1.0):  # the oblique plane often cuts an arm beside the anterior chest
        if u() < 0.35:
            arms.append(
                _Blob(
                    (side * u(90, 180), -anterior_gap - u(15, 70)),
                    (u(30, 50), u(35, 60)),
                    u(-math.pi, math.pi),
                    _harmonics(rng, 3, 0.05),
                    0.0,
                )
            )
    coils = [
        (u(-80, 80), body.centre[1] - body_b - u(0, 15), u(0.7, 1.3), u(50, 130)),
        (u(-80, 80), body.centre[1] - body_b - u(0, 15), u(0.7, 1.3), u(50, 130)),
        (u(-80, 80), body.centre[1] + body_b + u(0, 20), u(0.5, 1.0), u(50, 130)),
    ]

    # --- appearance (relative to LV blood = 1)
    values = {
        "blood": 1.0,
        "rv_blood": u(0.85, 1.05),
        "atrium": u(0.8, 1.0),
        "aorta": u(0.6, 1.1),
        "myocardium": u(0.12, 0.5),
        "fat": u(0.9, 1.8),
        "epicardial_fat": u(0.7, 1.4),
        "pericardium": u(0.05, 0.2),
        "muscle": u(0.12, 0.42),
        "mediastinum": u(0.08, 0.5),
        "lung": u(0.02, 0.08),
        "lung_vessel": u(0.3, 0.8),
        "liver": u(0.2, 0.8),
        "stomach": float(rng.choice([u(0.05, 0.2), u(0.4, 0.8), u(0.8, 1.4)])),
        "spine": u(0.3, 0.7),
        "clutter_scale": u(0.6, 1.2),
    }
    organs = ("lung", "lung", "liver", "stomach", "spine", "aorta")  # the order _slice_scene uses
    for blob, key in zip(inside_cavity, organs, strict=True):
        blob.value = values[key]
    for arm in arms:
        arm.value = values["muscle"]
    # organ clutter: bowel, vessels, spleen... in the abdomen and around the thorax
    for _ in range(int(rng.integers(4, 13))):
        angle = u(0.0, math.pi) if u() < 0.75 else u(-math.pi, 0.0)
        distance = u(75, 150)
        inside_cavity.append(
            _Blob(
                (distance * math.cos(angle), distance * math.sin(angle)),
                (u(6, 32), u(6, 32)),
                u(-math.pi, math.pi),
                _harmonics(rng, 3, 0.08),
                u(0.08, 1.2) * values["clutter_scale"],
                rim=u(0.8, 3.0) if u() < 0.5 else 0.0,
                depth=(u(-30, long_axis + 30), u(12, 60), u(-0.4, 0.4), u(-0.4, 0.4)),
            )
        )
    for _ in range(int(rng.integers(5, 16))):  # small vessels and bowel loops anywhere
        angle, distance, size = u(-math.pi, math.pi), u(60, 170), u(2.5, 9)
        inside_cavity.append(
            _Blob(
                (distance * math.cos(angle), distance * math.sin(angle)),
                (size, size * u(0.6, 1.0)),
                u(-math.pi, math.pi),
                (),
                u(0.1, 1.2),
                rim=u(0.8, 2.0) if u() < 0.3 else 0.0,
                depth=(u(-30, long_axis + 30), u(15, 120), u(-0.6, 0.6), u(-0.6, 0.6)),
            )
        )

    orientation = _sax_orientation(rng)
    return _Anatomy(
        group=group,
        rows=rows,
        cols=cols,
        spacing=spacing,
        thickness=thickness,
        slice_spacing=slice_spacing,
        z_slices=_slice_positions(rng, long_axis, slice_spacing),
        heart_px=heart_px,
        rotation=rotation,
        drift=drift,
        lv_radius=lv_radius,
        wall=wall,
        long_axis=long_axis,
        apex_cap=apex_cap,
        equator=equator,
        ef=ef,
        cavity_scale_es=cavity_scale_es,
        base_descent=descent,
        es_phase=es_phase,
        endo_base=endo_base,
        endo_apex=endo_apex,
        thick_coef=thick_coef,
        infarct=infarct,
        septal_boost=septal_boost,
        rv_angle=rv_angle,
        rv_half_width=rv_half_width,
        rv_power=rv_power,
        rv_width=rv_width,
        rv_wall=rv_wall,
        rv_extent=rv_extent,
        rv_contraction=rv_contraction,
        fat_coef=fat_coef,
        fat_mean=fat_mean,
        papillary=papillary,
        trabecular_depth=trabecular_depth,
        trabecular_coef=trabecular_coef,
        trabecular_power=trabecular_power,
        trabeculae=trabeculae,
        la_angle=la_angle,
        la_radius=la_radius,
        aortic_root_angle=aortic_root_angle,
        aortic_root_radius=aortic_root_radius,
        body=body,
        subcutaneous_fat=subcutaneous_fat,
        chest_muscle=chest_muscle,
        inside_cavity=inside_cavity,
        arms=arms,
        coils=coils,
        values=values,
        gamma=u(0.75, 1.3),
        texture=u(0.04, 0.12),
        noise=u(0.015, 0.06),
        k_fraction=(u(0.5, 0.8), u(0.7, 0.95)) if u() < 0.5 else (u(0.7, 0.95), u(0.5, 0.8)),
        k_taper=u(0.0, 0.5),
        fov_kind=str(rng.choice(["none", "circle", "circle", "curved"])),
        fov_params=(u(0.42, 0.52), u(-0.04, 0.04), u(0.3, 1.2)),
        scale=u(700, 1500),
        heart_rate=int(rng.integers(55, 90)),
        height=round(u(150, 195), 1),
        weight=round(u(50, 110), 1),
        orientation=orientation,
        heart_world=np.array([u(-20, 20), u(-20, 20), u(-20, 20)]),
        position_offset=u(-80, -20),
    )


def _harmonics(rng: np.random.Generator, count: int, amplitude: float) -> tuple:
    return tuple(
        (k, float(rng.normal(0.0, amplitude / k)), float(rng.uniform(0, 2 * math.pi)))
        for k in range(2, count + 2)
    )


def _slice_positions(rng: np.random.Generator, long_axis: float, spacing: float) -> np.ndarray:
    """Slice centres along the long axis from base (0) toward the apex, in mm."""
    first = rng.uniform(0.0, 0.1) * long_axis
    # the last slice lies beyond the endocardial apex (myocardial cap or nothing); sometimes one
    # more
    count = math.ceil((long_axis - first) / spacing) + 1 + int(rng.uniform() < 0.3)
    return first + spacing * np.arange(count)


def _sax_orientation(rng: np.random.Generator) -> np.ndarray:
    """A short-axis plane like the Sunnybrook ones (LPS), jittered: rows = (row dir, col dir, n)."""
    row_dir = np.array([-0.105, 0.346, -0.932])
    col_dir = np.array([-0.733, -0.660, -0.163])
    rotation = _rotation(rng.normal(0.0, 0.12, 3))
    row_dir, col_dir = rotation @ row_dir, rotation @ col_dir
    row_dir /= np.linalg.norm(row_dir)
    col_dir -= row_dir * (row_dir @ col_dir)
    col_dir /= np.linalg.norm(col_dir)
    return np.stack([row_dir, col_dir, np.cross(row_dir, col_dir)])


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------------------------
# Motion and heart geometry


def _contraction(phase: float, es_phase: int) -> float:
    """Fraction of end-systolic contraction at a phase: 0 at ED, 1 at ES (smooth, periodic)."""
    t = phase % PHASES
    if t <= es_phase:
        return 0.5 * (1.0 - math.cos(math.pi * t / es_phase))
    rest = PHASES - es_phase
    knots_t = [es_phase, es_phase + 0.4 * rest, PHASES - 0.2 * rest, PHASES]
    knots_f = [1.0, 0.22, 0.15, 0.0]
    for i in range(3):
        if t <= knots_t[i + 1]:
            s = (t - knots_t[i]) / (knots_t[i + 1] - knots_t[i])
            return knots_f[i] + (knots_f[i + 1] - knots_f[i]) * 0.5 * (1 - math.cos(math.pi * s))
    return 0.0


def _bump(theta: np.ndarray, centre: float, half_width: float, power: float = 2.0) -> np.ndarray:
    """A smooth angular window: 1 at ``centre``, 0 beyond ``half_width`` (radians)."""
    d = np.abs(np.remainder(theta - centre + math.pi, 2 * math.pi) - math.pi) / half_width
    return np.where(
        d < 1.0, np.maximum(np.cos(0.5 * math.pi * np.minimum(d, 1.0)), 0.0) ** power, 0.0
    )


@dataclass
class _Angles:
    """Everything about a set of angles around the LV centre that does not change with time."""

    theta: np.ndarray
    shape_base: np.ndarray  # relative endocardial radius at the base and at the apex
    shape_apex: np.ndarray
    thickness: np.ndarray  # relative wall thickness (septal hypertrophy included)
    infarct: np.ndarray | None  # 0..1 infarct sector weight
    rv: np.ndarray  # 0..1 RV crescent profile
    fat: np.ndarray  # epicardial fat thickness before scaling, mm
    trabecular: np.ndarray  # relative depth of the trabeculated ramp (jagged)


def _fourier(theta: np.ndarray, coef: np.ndarray, first: int = 1) -> np.ndarray:
    """Sum of ``coef[j, 0] cos(k theta) + coef[j, 1] sin(k theta)``, k = first + j."""
    unit = np.exp(1j * theta)
    power = unit**first
    total = np.zeros(theta.shape)
    for cos_coef, sin_coef in coef:
        total += cos_coef * power.real + sin_coef * power.imag
        power = power * unit
    return total


def _angles(anat: _Anatomy, theta: np.ndarray) -> _Angles:
    thickness = 1.0 + _fourier(theta, anat.thick_coef)
    if anat.septal_boost:
        thickness = thickness * (1.0 + anat.septal_boost * _bump(theta, anat.rv_angle, 1.0))
    infarct = None
    if anat.infarct is not None:
        infarct = _bump(theta, anat.infarct[0], anat.infarct[1])
    return _Angles(
        theta=theta,
        shape_base=1.0 + _fourier(theta, anat.endo_base),
        shape_apex=1.0 + _fourier(theta, anat.endo_apex),
        thickness=thickness,
        infarct=infarct,
        rv=_bump(theta, anat.rv_angle, anat.rv_half_width, power=anat.rv_power),
        fat=np.maximum(anat.fat_mean + _fourier(theta, anat.fat_coef), 0.0),
        # trabeculation lines the free wall; the septal surface is smooth
        trabecular=np.clip(1.0 + _fourier(theta, anat.trabecular_coef, first=3), 0.1, 1.8)
        * (1.0 - 0.7 * _bump(theta, anat.rv_angle, 1.3)),
    )


@dataclass
class _HeartState:
    """Where a slice cuts the heart at one phase: long-axis position and contraction."""

    zeta: float
    contraction: float
    lv_present: bool
    epi_present: bool
    rv_scale: float


def _heart_state(anat: _Anatomy, z: float, phase: int) -> _HeartState:
    f = _contraction(phase, anat.es_phase)
    descent = anat.base_descent * f
    zeta = (z - descent) * anat.long_axis / (anat.long_axis - descent)
    endo = _profile(anat, zeta, epi=False)
    epi = _profile(anat, zeta, epi=True)
    rv_extent = 1.0 - (zeta / (anat.rv_extent * anat.long_axis)) ** 2
    rv_scale = (1.0 - f * anat.rv_contraction) * math.sqrt(max(rv_extent, 0.0)) if zeta >= 0 else 0
    return _HeartState(
        zeta=zeta,
        contraction=f,
        lv_present=zeta >= 0 and endo * (1 - f * (1 - anat.cavity_scale_es)) >= MIN_RADIUS_MM,
        epi_present=zeta >= 0 and epi >= MIN_RADIUS_MM,
        rv_scale=rv_scale,
    )


def _profile(anat: _Anatomy, zeta: float, *, epi: bool) -> float:
    """Mean ED radius of the endocardium (or epicardium) at long-axis position ``zeta``."""
    radius = anat.lv_radius + (anat.wall if epi else 0.0)
    apex = anat.long_axis + (anat.apex_cap if epi else 0.0)
    if zeta >= apex:
        return 0.0
    if zeta >= anat.equator:
        return radius * math.sqrt(1.0 - ((zeta - anat.equator) / (apex - anat.equator)) ** 2)
    return radius * (1.0 - 0.18 * ((anat.equator - zeta) / anat.equator) ** 2)


def _radii(anat: _Anatomy, state: _HeartState, angles: _Angles) -> dict[str, np.ndarray]:
    """Boundary radii (mm) at the given angles, for one slice and phase."""
    zeta = state.zeta
    w = float(np.clip(zeta / anat.long_axis, 0.0, 1.0))
    thick = angles.thickness
    motion: np.ndarray | float = 1.0
    if angles.infarct is not None and anat.infarct is not None:
        _, _, zeta0, zeta1 = anat.infarct
        inside = min(zeta - zeta0 * anat.long_axis, zeta1 * anat.long_axis - zeta) / 8.0
        sector = angles.infarct * float(np.clip(inside, 0.0, 1.0))
        thick = thick * (1.0 - 0.5 * sector)
        motion = 1.0 - 0.9 * sector
    endo_mean = _profile(anat, zeta, epi=False)
    epi_mean = _profile(anat, zeta, epi=True)
    endo_ed = endo_mean * ((1 - w) * angles.shape_base + w * angles.shape_apex)
    epi_ed = endo_ed + max(epi_mean - endo_mean, 0.0) * thick
    # cavity contraction, then per-angle conservation of the myocardial area
    f = state.contraction
    endo = endo_ed * (1.0 - f * (1.0 - anat.cavity_scale_es) * motion)
    shortening = anat.long_axis / (anat.long_axis - anat.base_descent * f)
    epi = np.sqrt(endo * endo + (epi_ed * epi_ed - endo_ed * endo_ed) * shortening)
    zeros = np.zeros_like(angles.theta)
    depth = anat.trabecular_depth * (1.0 + 0.5 * f) * (0.8 + 0.4 * w) * angles.trabecular
    ramp = np.maximum(np.minimum(depth, 0.7 * endo), 0.3)
    rv_width = (anat.rv_width * state.rv_scale) * angles.rv
    rv_cavity = epi + rv_width
    rv_outer = rv_cavity + anat.rv_wall * np.clip(rv_width / 3.0, 0.0, 1.0)
    return {
        "endo": endo if state.lv_present else zeros,
        "ramp": ramp,
        "epi": epi if state.epi_present else zeros,
        "rv_cavity": rv_cavity,
        "rv_outer": rv_outer,
        "fat": rv_outer + angles.fat * min(1.0, epi_mean / 10.0),
        "rv_width": rv_width,
    }


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass
class _Grid:
    """Pixel-centre coordinates in body mm (u = screen right, v = screen down, LV centre = 0)."""

    u: np.ndarray
    v: np.ndarray
    spacing: float


def _heart_pixel(anat: _Anatomy, downscale: int) -> tuple[float, float]:
    """(row, col) of the body origin in the (possibly downscaled) image."""
    return (
        (anat.heart_px[0] + 0.5) / downscale - 0.5,
        (anat.heart_px[1] + 0.5) / downscale - 0.5,
    )


def _grid(anat: _Anatomy, rows: int, cols: int, spacing: float, downscale: int) -> _Grid:
    heart_row, heart_col = _heart_pixel(anat, downscale)
    y = (np.arange(rows, dtype=np.float32) - heart_row)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float32) - heart_col)[None, :] * spacing
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    return _Grid(
        u=(c * x + s * y).astype(np.float32),
        v=(-s * x + c * y).astype(np.float32),
        spacing=spacing,
    )


def _to_pixels(
    anat: _Anatomy, u: np.ndarray, v: np.ndarray, spacing: float, downscale: int
) -> np.ndarray:
    """Body mm -> (x = col, y = row) pixel coordinates, as contour files hold them."""
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    heart_row, heart_col = _heart_pixel(anat, downscale)
    x = heart_col + (c * u - s * v) / spacing
    y = heart_row + (s * u + c * v) / spacing
    return np.stack([x, y], axis=-1)


def _coverage(signed_distance_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Partial-volume coverage of a pixel by a region, from its signed distance (inside < 0)."""
    return np.clip(0.5 - signed_distance_mm / spacing, 0.0, 1.0)


def _blob_distance(blob: _Blob, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to a perturbed ellipse."""
    x, y = u - blob.centre[0], v - blob.centre[1]
    c, s = math.cos(blob.angle), math.sin(blob.angle)
    xr, yr = (c * x + s * y) / blob.axes[0], (-s * x + c * y) / blob.axes[1]
    q = np.sqrt(xr * xr + yr * yr)
    boundary: np.ndarray | float = 1.0
    if blob.harmonics:
        phi = np.arctan2(yr, xr)
        boundary = 1.0 + sum(a * np.cos(k * phi + p) for k, a, p in blob.harmonics)
    return (q - boundary) * (0.5 * (blob.axes[0] + blob.axes[1]))


def _paint(
    canvas: np.ndarray,
    grid: _Grid,
    blob: _Blob,
    within: np.ndarray | None = None,
) -> None:
    """Composite a blob onto ``canvas``, computing only inside its bounding box."""
    reach = max(blob.axes) * 1.4 + blob.rim + 2 * grid.spacing
    near = (np.abs(grid.u - blob.centre[0]) < reach) & (np.abs(grid.v - blob.centre[1]) < reach)
    rows = np.flatnonzero(near.any(axis=1))
    cols = np.flatnonzero(near.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    distance = _blob_distance(blob, grid.u[box], grid.v[box])
    weight = 1.0 if within is None else within[box]
    if blob.rim > 0:
        canvas[box] += (0.04 - canvas[box]) * _coverage(distance - blob.rim, grid.spacing) * weight
    canvas[box] += (blob.value - canvas[box]) * _coverage(distance, grid.spacing) * weight


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation: Gaussian bumps on a coarse grid."""

    def basis(n: int) -> np.ndarray:
        centres = np.linspace(-0.5, n - 0.5, cells)
        width = n / (cells - 1)
        return np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / width) ** 2)

    field_ = basis(rows) @ rng.standard_normal((cells, cells)) @ basis(cols).T
    return ((field_ - field_.mean()) / (field_.std() + 1e-6)).astype(np.float32)


@dataclass
class _SliceScene:
    """What stays the same across the phases of one slice: background, fields, heart window."""

    background: np.ndarray  # tissue values, before gamma
    gain: np.ndarray  # texture x coil sensitivity
    window: tuple[slice, slice]
    du: np.ndarray
    dv: np.ndarray
    rho: np.ndarray
    angles: _Angles
    centre: tuple[float, float]  # heart centre of this slice, body mm
    centre_px: tuple[float, float]  # the same in (row, col) pixels of the window


def _slice_scene(anat: _Anatomy, grid: _Grid, z: float, rng: np.random.Generator) -> _SliceScene:
    rows, cols = grid.u.shape
    values = anat.values
    zeta_ed = z / anat.long_axis
    toward_apex = float(np.clip(zeta_ed, 0.0, 1.0))

    canvas = np.zeros((rows, cols), np.float32)
    for arm in anat.arms:  # behind the body: where they touch, the body's skin wins
        _paint(canvas, grid, _Blob(arm.centre, arm.axes, arm.angle, arm.harmonics, values["fat"]))
        inner = (arm.axes[0] - anat.subcutaneous_fat, arm.axes[1] - anat.subcutaneous_fat)
        _paint(canvas, grid, _Blob(arm.centre, inner, arm.angle, arm.harmonics, arm.value))
    body_distance = _blob_distance(anat.body, grid.u, grid.v)
    fat_thickness = anat.subcutaneous_fat * (1.0 + 0.35 * _smooth_noise(rng, rows, cols, 5))
    body = _coverage(body_distance, grid.spacing)
    canvas += (values["fat"] - canvas) * body
    muscle = _coverage(body_distance + fat_thickness, grid.spacing)
    canvas += (values["muscle"] - canvas) * muscle
    cavity = _coverage(body_distance + fat_thickness + anat.chest_muscle, grid.spacing)
    canvas += (values["mediastinum"] - canvas) * cavity

    # Organs move with the slice: lungs shrink and the liver and stomach rise toward the apex.
    for number, blob in enumerate(anat.inside_cavity):
        centre, axes = blob.centre, blob.axes
        if number < 2:
            axes = (axes[0] * (1 - 0.25 * toward_apex), axes[1] * (1 - 0.2 * toward_apex))
        elif number < 4:
            centre = (centre[0], centre[1] - 25.0 * toward_apex)
            axes = (axes[0] * (0.8 + 0.3 * toward_apex), axes[1] * (0.8 + 0.3 * toward_apex))
        elif blob.depth is not None:
            middle, half, drift_u, drift_v = blob.depth
            along = (z - middle) / half
            scale = math.sqrt(max(0.0, 1.0 - along * along))
            if scale * min(axes) < 1.0:
                continue  # this slice misses it
            axes = (axes[0] * scale, axes[1] * scale)
            centre = (centre[0] + drift_u * (z - middle), centre[1] + drift_v * (z - middle))
        shifted = _Blob(centre, axes, blob.angle, blob.harmonics, blob.value, blob.rim)
        _paint(canvas, grid, shifted, within=cavity)
        if number < 2:  # vessels in the lungs
            for _ in range(int(rng.integers(3, 10))):
                r, a = math.sqrt(rng.uniform(0, 0.6)), rng.uniform(0, 2 * math.pi)
                c, s = math.cos(blob.angle), math.sin(blob.angle)
                x, y = r * math.cos(a) * axes[0], r * math.sin(a) * axes[1]
                vessel_centre = (centre[0] + c * x - s * y, centre[1] + s * x + c * y)
                size = rng.uniform(1.2, 4.0)
                vessel = _Blob(vessel_centre, (size, size), 0.0, (), values["lung_vessel"])
                _paint(canvas, grid, vessel, within=cavity)
        if number == 4:  # bright marrow inside the vertebral body
            marrow = (axes[0] * 0.6, axes[1] * 0.6)
            _paint(canvas, grid, _Blob(centre, marrow, 0.0, blob.harmonics, blob.value * 1.5))

    # Multiplicative fields: tissue texture and the coil sensitivity (normalised at the heart).
    texture = 1.0 + anat.texture * (
        _smooth_noise(rng, rows, cols, max(6, rows // 10)) + 0.5 * _smooth_noise(rng, rows, cols, 4)
    )
    sensitivity = np.zeros((rows, cols), np.float32)
    reference = 0.0
    for cu, cv, weight, decay in anat.coils:
        sensitivity += weight * np.exp(-np.hypot(grid.u - cu, grid.v - cv) / decay)
        reference += weight * math.exp(-math.hypot(cu, cv) / decay)
    gain = (np.clip(texture, 0.5, 1.5) * sensitivity / reference).astype(np.float32)

    # The heart's centre drifts along the slices (oblique long axis) and between breath-holds.
    centre = (
        anat.drift[0] * (z - 0.5 * anat.long_axis) + rng.normal(0.0, 1.5),
        anat.drift[1] * (z - 0.5 * anat.long_axis) + rng.normal(0.0, 1.5),
    )
    # what the heart paints reaches the RV, fat and pericardium beyond the epicardium, or the
    # left atrium (at most 1.7 of its radius beyond it); the window bounds the larger, with room
    reach = (
        anat.lv_radius
        + 2.0 * anat.wall
        + max(1.3 * anat.rv_width + 10.0, 2.2 * anat.la_radius)
        + 15.0
    )
    near = (np.abs(grid.u - centre[0]) < reach) & (np.abs(grid.v - centre[1]) < reach)
    rows_in, cols_in = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    window = (slice(rows_in[0], rows_in[-1] + 1), slice(cols_in[0], cols_in[-1] + 1))
    du, dv = grid.u[window] - centre[0], grid.v[window] - centre[1]
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    centre_px = (
        rows_in[0] + (rows_in.size - 1) / 2 - float(du.mean() * s + dv.mean() * c) / grid.spacing,
        cols_in[0] + (cols_in.size - 1) / 2 - float(du.mean() * c - dv.mean() * s) / grid.spacing,
    )
    return _SliceScene(
        background=canvas,
        gain=gain,
        window=window,
        du=du,
        dv=dv,
        rho=np.hypot(du, dv),
        angles=_angles(anat, np.arctan2(dv, du)),
        centre=centre,
        centre_px=(centre_px[0] - rows_in[0], centre_px[1] - cols_in[0]),
    )


def _disc(
    canvas: np.ndarray,
    scene: _SliceScene,
    anat: _Anatomy,
    spacing: float,
    x: float,
    y: float,
    radius: float,
    value: float,
) -> None:
    """Composite a disc (centre relative to the slice's heart centre, mm) onto the window."""
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    row = scene.centre_px[0] + (s * x + c * y) / spacing
    col = scene.centre_px[1] + (c * x - s * y) / spacing
    reach = radius / spacing + 2.0
    r0, r1 = max(int(row - reach), 0), min(int(row + reach) + 2, canvas.shape[0])
    c0, c1 = max(int(col - reach), 0), min(int(col + reach) + 2, canvas.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    box = (slice(r0, r1), slice(c0, c1))
    distance = np.hypot(scene.du[box] - x, scene.dv[box] - y) - radius
    canvas[box] += (value - canvas[box]) * _coverage(distance, spacing)


def _paint_heart(
    anat: _Anatomy,
    scene: _SliceScene,
    state: _HeartState,
    radii: dict[str, np.ndarray],
    spacing: float,
) -> np.ndarray:
    """The heart window of one frame: the background with the heart composited over it."""
    values = anat.values
    canvas = scene.background[scene.window].copy()
    rho = scene.rho
    epi_mean = _profile(anat, state.zeta, epi=True)
    long_axis = anat.long_axis

    # Basal slices: left atrium (posterior) and aortic root (anterior-septal), bright blood.
    la_size = float(np.clip((0.12 * long_axis - state.zeta) / (0.15 * long_axis), 0.0, 1.0))
    if la_size > 0:
        radius = anat.la_radius * math.sqrt(la_size)
        distance = max(epi_mean, 8.0) + 0.7 * radius
        x, y = distance * math.cos(anat.la_angle), distance * math.sin(anat.la_angle)
        _disc(canvas, scene, anat, spacing, x, y, radius + 2.0, values["myocardium"])
        _disc(canvas, scene, anat, spacing, x, y, radius, values["atrium"])
    root_size = float(np.clip((0.06 * long_axis - state.zeta) / (0.06 * long_axis), 0.0, 1.0))
    if root_size > 0:
        radius = anat.aortic_root_radius * root_size**0.3
        distance = max(epi_mean, 8.0) + 0.5 * radius
        x, y = (
            distance * math.cos(anat.aortic_root_angle),
            distance * math.sin(anat.aortic_root_angle),
        )
        _disc(canvas, scene, anat, spacing, x, y, radius + 1.5, values["myocardium"])
        _disc(canvas, scene, anat, spacing, x, y, radius, values["aorta"])

    if not state.epi_present:
        return canvas
    fat_thickness = radii["fat"] - radii["rv_outer"]
    rv_width = radii["rv_width"]
    layers = (
        (radii["fat"] + 1.2, values["pericardium"], None),
        (radii["fat"], values["epicardial_fat"], np.clip(fat_thickness / spacing, 0.0, 1.0)),
        (radii["rv_outer"], values["myocardium"], np.clip(rv_width / 2.0, 0.0, 1.0)),
        (radii["rv_cavity"], values["rv_blood"], np.clip(rv_width / spacing, 0.0, 1.0)),
        (radii["epi"], values["myocardium"], None),
    )
    for radius, value, gate in layers:
        alpha = _coverage(rho - radius, spacing)
        if gate is not None:
            alpha *= gate
        canvas += (value - canvas) * alpha
    if not state.lv_present:
        return canvas
    # the pool brightens from the wall inward (trabeculated, slow-flowing periphery)
    depth = np.clip((radii["endo"] - rho) / radii["ramp"], 0.0, 1.0) ** anat.trabecular_power
    pool = values["myocardium"] + (values["blood"] - values["myocardium"]) * depth
    canvas += (pool - canvas) * _coverage(rho - radii["endo"], spacing)

    # Papillary muscles and trabeculations: dark blobs against the wall, inside the blood pool.
    zeta = state.zeta / long_axis
    blobs = []
    papillary_weight = float(np.clip(min(zeta - 0.2, 0.92 - zeta) / 0.1, 0.0, 1.0))
    if papillary_weight > 0:
        grow = papillary_weight * (1 + 0.5 * state.contraction)
        for angle, radius, second in anat.papillary:
            blobs.append((angle, radius * grow))
            if second > 0.4:  # a second head beside the first
                blobs.append((angle + 0.35 * (second - 0.7), 0.8 * second * radius * grow))
    for angle, radius, where in anat.trabeculae:
        if abs(zeta - where) < 0.25:
            blobs.append((angle, radius))
    if blobs:
        angles = np.array([angle for angle, _ in blobs])
        endo = _radii(anat, state, _angles(anat, angles))["endo"]
        for (angle, radius), wall in zip(blobs, endo, strict=True):
            if radius < 0.5 or wall < 3.0:
                continue
            distance = max(wall - 0.9 * radius, 0.0)
            x, y = distance * math.cos(angle), distance * math.sin(angle)
            _disc(canvas, scene, anat, spacing, x, y, radius, values["myocardium"])
    return canvas


@dataclass
class _Optics:
    """Per-patient k-space filter, noise level and field-of-view mask."""

    k_filter: np.ndarray
    acquired_rows: np.ndarray
    acquired_cols: np.ndarray
    noise_k: float
    fov_mask: np.ndarray | None


def _optics(anat: _Anatomy, rows: int, cols: int) -> _Optics:
    def window(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        frequencies = np.fft.fftfreq(n) * 2.0  # -1..1 of Nyquist
        half = fraction
        inside = np.abs(frequencies) <= half
        edge = np.clip((half - np.abs(frequencies)) / max(anat.k_taper * half, 1e-6), 0.0, 1.0)
        taper = np.where(anat.k_taper > 0, 0.5 - 0.5 * np.cos(np.pi * edge), 1.0)
        return (inside * taper).astype(np.float32), np.flatnonzero(inside)

    row_window, acquired_rows = window(rows, anat.k_fraction[0])
    col_window, acquired_cols = window(cols, anat.k_fraction[1])
    acquired = acquired_rows.size * acquired_cols.size
    noise_k = anat.noise * rows * cols / math.sqrt(acquired)
    fov_mask = None
    radius, offset, curve = anat.fov_params
    y = (np.arange(rows) - rows / 2 + 0.5)[:, None] / cols
    x = (np.arange(cols) - cols / 2 + 0.5)[None, :] / cols
    if anat.fov_kind == "circle":
        fov_mask = ((x - offset) ** 2 + (y + offset) ** 2 <= radius**2).astype(np.float32)
    elif anat.fov_kind == "curved":
        fov_mask = (np.abs(x) <= radius * 0.85 + curve * y**2).astype(np.float32)
    return _Optics(
        k_filter=np.outer(row_window, col_window),
        acquired_rows=acquired_rows,
        acquired_cols=acquired_cols,
        noise_k=noise_k,
        fov_mask=fov_mask,
    )


def _acquire(
    anat: _Anatomy, optics: _Optics, obj: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Object -> magnitude image: k-space truncation, complex noise, magnitude, FOV, scaling."""
    kspace = sfft.fft2(obj, workers=1)
    kspace *= optics.k_filter
    shape = (optics.acquired_rows.size, optics.acquired_cols.size)
    noise = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(
        shape, dtype=np.float32
    )
    kspace[np.ix_(optics.acquired_rows, optics.acquired_cols)] += optics.noise_k * noise
    image = np.abs(sfft.ifft2(kspace, workers=1))
    if optics.fov_mask is not None:
        image *= optics.fov_mask
    return np.clip(np.rint(image * anat.scale), 0, 32767).astype(np.float32)


def _polygon(
    anat: _Anatomy,
    radius: np.ndarray,
    theta: np.ndarray,
    centre: tuple[float, float],
    spacing: float,
    downscale: int,
) -> np.ndarray:
    """Contour points (x, y) as a contour file holds them (corner origin, 0.01 px)."""
    u = centre[0] + radius * np.cos(theta)
    v = centre[1] + radius * np.sin(theta)
    return np.round(_to_pixels(anat, u, v, spacing, downscale) + CONTOUR_OFFSET_PX, 2)


# --------------------------------------------------------------------------------------------
# Generation


def generate_patient(
    index: int,
    seed: int = DEFAULT_SEED,
    *,
    phases: Sequence[int] | str | None = None,
    downscale: int = 1,
    group: str | None = None,
    acquisition: dict[str, Any] | None = None,
    contrast: str = "ssfp",
) -> PhantomPatient:
    """Generate synthetic patient ``index`` (0-based) of the phantom drawn with ``seed``.

    ``phases`` renders only some cardiac phases (a list of indices, or ``"ed_es"``); a phase's
    images do not depend on which others are rendered. ``downscale`` divides the matrix and
    multiplies the pixel spacing (same anatomy, fewer pixels: for fast tests). ``group`` overrides
    the group ``GROUPS[index % 4]``. ``acquisition`` fixes some of the patient's acquisition
    draws (keys of :data:`ACQUISITION`); the anatomy and everything else stay as drawn.
    """
    _check_int("index", index, 0, MAX_PATIENTS - 1)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("downscale", downscale, 1, 8)
    group = GROUPS[index % len(GROUPS)] if group is None else group
    if group not in GROUPS:
        raise InvalidInputError(None, f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    anat = _sample_anatomy(np.random.default_rng([seed, index, 0]), group)
    _check_contrast(contrast)
    if contrast == "random":
        anat = _randomised(anat, np.random.default_rng([seed, index, 2]))
    if acquisition:
        settings = _checked_acquisition(acquisition)
        offset = settings.pop("heart_offset_mm", None)
        anat = replace(anat, **settings)
        if offset is not None:
            centre = (anat.rows / 2 - 0.5, anat.cols / 2 - 0.5)
            anat = replace(
                anat,
                heart_px=(
                    centre[0] + offset[0] / anat.spacing,
                    centre[1] + offset[1] / anat.spacing,
                ),
            )
    if phases is None:
        phase_indices = tuple(range(PHASES))
    elif isinstance(phases, str):
        if phases not in LABELLED_PHASES:
            raise InvalidInputError(
                None, f"phases must be a list, 'ed_es' or 'all', got {phases!r}"
            )
        phase_indices = (0, anat.es_phase) if phases == "ed_es" else tuple(range(PHASES))
    else:
        phase_indices = tuple(sorted({int(p) for p in phases}))
        if not phase_indices or not all(0 <= p < PHASES for p in phase_indices):
            raise InvalidInputError(None, f"phases must be indices in 0..{PHASES - 1}")

    rows, cols = anat.rows // downscale, anat.cols // downscale
    spacing = round(anat.spacing * downscale, 4)
    grid = _grid(anat, rows, cols, spacing, downscale)
    optics = _optics(anat, rows, cols)
    slices = len(anat.z_slices)
    shape = (len(phase_indices), slices, rows, cols)
    images = np.zeros(shape, np.float32)
    lv = np.zeros(shape, bool)
    myocardium = np.zeros(shape, bool)
    rv = np.zeros(shape, bool)
    endocardium: dict[tuple[int, int], np.ndarray] = {}
    epicardium: dict[tuple[int, int], np.ndarray] = {}
    contour_theta = np.linspace(-math.pi, math.pi, CONTOUR_POINTS, endpoint=False)
    contour_angles = _angles(anat, contour_theta)

    for s, z in enumerate(anat.z_slices):
        scene = _slice_scene(anat, grid, float(z), np.random.default_rng([seed, index, 1, s]))
        base = scene.background**anat.gamma * scene.gain
        for i, phase in enumerate(phase_indices):
            state = _heart_state(anat, float(z), phase)
            obj = base.copy()
            window_radii = _radii(anat, state, scene.angles)
            heart = 0.5 * _paint_heart(anat, scene, state, window_radii, spacing)
            # slice profile: the slice also sees the heart a third of its thickness either side
            for offset in (-anat.thickness / 3, anat.thickness / 3):
                side = _heart_state(anat, float(z) + offset, phase)
                side_radii = _radii(anat, side, scene.angles)
                heart += 0.25 * _paint_heart(anat, scene, side, side_radii, spacing)
            obj[scene.window] = np.maximum(heart, 0.0) ** anat.gamma * scene.gain[scene.window]
            images[i, s] = _acquire(
                anat, optics, obj, np.random.default_rng([seed, index, 2, s, phase])
            )
            if not state.epi_present:
                continue
            radii = _radii(anat, state, contour_angles)
            epi_points = _polygon(
                anat, radii["epi"], contour_theta, scene.centre, spacing, downscale
            )
            epi_mask = contours.fill_contour(epi_points, (rows, cols))
            if state.lv_present:
                endo_points = _polygon(
                    anat, radii["endo"], contour_theta, scene.centre, spacing, downscale
                )
                lv[i, s] = contours.fill_contour(endo_points, (rows, cols))
                endocardium[(phase, s)] = endo_points
            epicardium[(phase, s)] = epi_points
            myocardium[i, s] = epi_mask & ~lv[i, s]
            rv_window = (scene.rho < window_radii["rv_cavity"]) & (window_radii["rv_width"] > 0.3)
            rv[i, s][scene.window] = rv_window & ~epi_mask[scene.window]

    orientation = anat.orientation
    heart_row, heart_col = _heart_pixel(anat, downscale)
    # the heart's world point lies in the plane of slice position 0, so that
    # SliceLocation = ImagePositionPatient . normal = the slice position
    heart_world = anat.heart_world - (anat.heart_world @ orientation[2]) * orientation[2]
    positions = []
    slice_positions = []
    for z in anat.z_slices:
        slice_position = round(anat.position_offset + float(z), 3)
        corner = (
            heart_world
            - heart_col * spacing * orientation[0]
            - heart_row * spacing * orientation[1]
            + slice_position * orientation[2]
        )
        positions.append(tuple(round(float(c), 4) for c in corner))
        slice_positions.append(slice_position)
    rr_ms = 60000.0 / anat.heart_rate
    number = index + 1
    return PhantomPatient(
        index=index,
        seed=seed,
        patient_id=f"PH{number:05d}01",
        original_id=f"PH-{group}-{number:02d}",
        group=group,
        images=images,
        lv=lv,
        myocardium=myocardium,
        rv=rv,
        phase_indices=phase_indices,
        endocardium=endocardium,
        epicardium=epicardium,
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=anat.thickness,
        slice_spacing_mm=anat.slice_spacing,
        slice_positions_mm=tuple(slice_positions),
        image_positions_mm=tuple(positions),
        image_orientation=tuple(round(float(c), 6) for c in orientation[:2].ravel()),
        trigger_times_ms=tuple(round(p * rr_ms / PHASES, 2) for p in range(PHASES)),
        heart_rate_bpm=anat.heart_rate,
        ed_phase=0,
        es_phase=anat.es_phase,
        ejection_fraction=round(anat.ef, 3),
        height_cm=anat.height,
        weight_kg=anat.weight,
        downscale=downscale,
    )


def patient_records(
    patient: PhantomPatient, labelled_phases: str = "ed_es", source_prefix: str | None = None
) -> list[SliceRecord]:
    """The patient's labelled slices as records: every slice with an LV at the chosen phases.

    ``labelled_phases`` is ``"ed_es"`` (the two phases Sunnybrook contours) or ``"all"`` (those
    of the 20 that were rendered). Records hold LV, myocardium and RV masks (RV may be empty).
    """
    if labelled_phases not in LABELLED_PHASES:
        raise InvalidInputError(
            None,
            f"labelled_phases must be one of {', '.join(LABELLED_PHASES)}, got {labelled_phases!r}",
        )
    wanted = (
        [p for p in (patient.ed_phase, patient.es_phase) if p in patient.phase_indices]
        if labelled_phases == "ed_es"
        else list(patient.phase_indices)
    )
    prefix = source_prefix or f"phantom(seed={patient.seed})"
    affine = patient.affine()
    records = []
    for s in range(patient.slices):
        for phase in wanted:
            if (phase, s) not in patient.endocardium:
                continue
            i = patient.row(phase)
            name = {patient.ed_phase: ED, patient.es_phase: ES}.get(phase)
            records.append(
                SliceRecord(
                    image=patient.images[i, s],
                    masks={
                        LV: patient.lv[i, s],
                        MYOCARDIUM: patient.myocardium[i, s],
                        RV: patient.rv[i, s],
                    },
                    patient_id=patient.original_id,
                    source=f"{prefix}/{patient.patient_id}/{patient.instance_number(s, phase)}",
                    geometry=Geometry(
                        original_shape=patient.shape,
                        source_pixel_spacing_mm=patient.pixel_spacing_mm,
                        image_position_mm=patient.image_positions_mm[s],
                        image_orientation=patient.image_orientation,
                        affine=affine,
                        volume_index=s,
                    ),
                    slice_index=s,
                    slice_position_mm=patient.slice_positions_mm[s],
                    phase_index=phase,
                    phase=name,
                    pixel_spacing_mm=patient.pixel_spacing_mm,
                    slice_thickness_mm=patient.slice_thickness_mm,
                    slice_spacing_mm=patient.slice_spacing_mm,
                    group=patient.group,
                )
            )
    return records


def phantom_dataset(
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    labelled_phases: str = "ed_es",
    *,
    downscale: int = 1,
) -> Dataset:
    """An in-memory phantom of ``patients`` synthetic patients as a :class:`Dataset`.

    >>> dataset = phantom_dataset(patients=2, seed=0, downscale=4)
    >>> sorted({r.phase for r in dataset}), dataset.patients
    (['ED', 'ES'], ['PH-HF-I-02', 'PH-N-01'])
    """
    _check_int("patients", patients, 1, MAX_PATIENTS)
    if labelled_phases not in LABELLED_PHASES:
        raise InvalidInputError(
            None,
            f"labelled_phases must be one of {', '.join(LABELLED_PHASES)}, got {labelled_phases!r}",
        )
    records: list[SliceRecord] = []
    for index in range(patients):
        patient = generate_patient(index, seed, phases=labelled_phases, downscale=downscale)
        records.extend(patient_records(patient, labelled_phases))
    return Dataset(records=records, format="phantom", root=f"phantom(seed={seed})")


# --------------------------------------------------------------------------------------------
# Writing


def write_phantom(
    out_dir: str | Path,
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    format: str = DEFAULT_FORMAT,
    overwrite: bool = False,
    *,
    downscale: int = 1,
    contrast: str = "ssfp",
) -> Path:
    """Write the phantom in a real on-disk layout, atomically; returns the folder.

    ``format="dicom"``: the Sunnybrook layout (``link.csv``, ``dicoms/<patient_id>/<N>.dcm``,
    ``contourfiles/<original_id>/{i,o}-contours/``); ``format="nifti"``: the ACDC layout
    (``patientNNN/patientNNN_4d.nii.gz``, ED/ES frames with ``_gt`` labels, ``Info.cfg``). Both
    get a ``phantom.json`` manifest. A non-empty folder is refused unless ``overwrite``, and even
    then unless lvseg wrote it (:func:`lvseg.atomic.check_output_folder`).
    """
    _check_int("patients", patients, 1, MAX_PATIENTS)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("downscale", downscale, 1, 8)
    if format not in FORMATS:
        raise InvalidInputError(None, f"unknown phantom format {format!r}; choose dicom or nifti")
    _check_contrast(contrast)
    out_dir = Path(out_dir)
    atomic.check_output_folder(out_dir, overwrite)
    entries = []
    with atomic.output_folder(out_dir) as folder:
        link_lines = ["patient_id,original_id,group"]
        for index in range(patients):
            patient = generate_patient(index, seed, downscale=downscale, contrast=contrast)
            if format == "dicom":
                _write_dicom_patient(patient, folder)
                link_lines.append(f"{patient.patient_id},{patient.original_id},{patient.group}")
                location = f"dicoms/{patient.patient_id}"
            else:
                location = _write_nifti_patient(patient, folder)
            entries.append(_manifest_entry(patient, location))
            del patient
        if format == "dicom":
            (folder / "link.csv").write_text("\n".join(link_lines) + "\n", encoding="utf-8")
        manifest = {
            "generator": "lvseg.data.phantom",
            "version": PHANTOM_VERSION,
            "seed": seed,
            "format": format,
            "downscale": downscale,
            "contrast": contrast,
            "phases": PHASES,
            "patients": entries,
        }
        (folder / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return out_dir


def _manifest_entry(patient: PhantomPatient, location: str) -> dict[str, Any]:
    entry = {
        "index": patient.index,
        "patient_id": patient.patient_id,
        "original_id": patient.original_id,
        "nifti_id": f"patient{patient.index + 1:03d}",
        "location": location,
        "group": patient.group,
        "ed_phase": patient.ed_phase,
        "es_phase": patient.es_phase,
        "slices": patient.slices,
        "rows": patient.shape[0],
        "cols": patient.shape[1],
        "pixel_spacing_mm": list(patient.pixel_spacing_mm),
        "slice_thickness_mm": patient.slice_thickness_mm,
        "slice_spacing_mm": patient.slice_spacing_mm,
        "ejection_fraction": patient.ejection_fraction,
    }
    volumes = patient.label_volumes_ml()
    if volumes is not None and volumes[0] > 0:
        edv, esv = volumes
        entry |= {
            "label_edv_ml": round(edv, 2),
            "label_esv_ml": round(esv, 2),
            "label_ejection_fraction": round(1.0 - esv / edv, 4),
        }
    return entry


def _uid(patient: PhantomPatient, *parts: object) -> str:
    from pydicom.uid import generate_uid

    sources = ["lvseg-phantom", PHANTOM_VERSION, str(patient.seed), patient.patient_id]
    return generate_uid(entropy_srcs=sources + [str(p) for p in parts])


def _write_dicom_patient(patient: PhantomPatient, folder: Path) -> None:
    """One patient's cine as DICOM files, and its ED/ES contours, in the Sunnybrook layout."""
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        MRImageStorage,
    )

    dicom_folder = folder / "dicoms" / patient.patient_id
    dicom_folder.mkdir(parents=True)
    study_uid, series_uid = _uid(patient, "study"), _uid(patient, "series")
    frame_uid = _uid(patient, "frame-of-reference")
    rows, cols = patient.shape
    rr_ms = 60000.0 / patient.heart_rate_bpm
    for s in range(patient.slices):
        for phase in patient.phase_indices:
            number = patient.instance_number(s, phase)
            sop_uid = _uid(patient, "instance", number)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            meta.ImplementationVersionName = "LVSEG_PHANTOM"
            ds = DicomDataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["DERIVED", "SECONDARY", "CARDIAC"]
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
            ds.Modality = "MR"
            ds.Manufacturer = "lvseg"
            ds.StudyDescription = "lvseg synthetic cardiac MRI"
            ds.SeriesDescription = SERIES_DESCRIPTION
            ds.PatientName = patient.patient_id
            ds.PatientID = patient.patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.PatientSize = f"{patient.height_cm / 100:.2f}"
            ds.PatientWeight = f"{patient.weight_kg:.1f}"
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SS"
            ds.MRAcquisitionType = "2D"
            ds.SliceThickness = _ds(patient.slice_thickness_mm)
            ds.SpacingBetweenSlices = _ds(patient.slice_spacing_mm)
            ds.MagneticFieldStrength = "1.5"
            ds.TriggerTime = _ds(patient.trigger_times_ms[phase])
            ds.NominalInterval = str(int(round(rr_ms)))
            ds.HeartRate = str(patient.heart_rate_bpm)
            ds.CardiacNumberOfImages = str(PHASES)
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = "1"
            ds.AcquisitionNumber = "1"
            ds.InstanceNumber = str(number)
            ds.ImagePositionPatient = [_ds(c) for c in patient.image_positions_mm[s]]
            ds.ImageOrientationPatient = [_ds(c) for c in patient.image_orientation]
            ds.FrameOfReferenceUID = frame_uid
            ds.ImagesInAcquisition = str(patient.slices * PHASES)
            ds.SliceLocation = _ds(patient.slice_positions_mm[s])
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, cols
            ds.PixelSpacing = [_ds(c) for c in patient.pixel_spacing_mm]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            pixels = patient.images[patient.row(phase), s].astype("<i2")
            ds.WindowCenter = _ds(float(np.percentile(pixels, 99)) / 2 + 1)
            ds.WindowWidth = _ds(float(np.percentile(pixels, 99)) + 2)
            ds.PixelData = pixels.tobytes()
            ds.save_as(dicom_folder / f"{number}.dcm", enforce_file_format=True)

    contour_folder = folder / "contourfiles" / patient.original_id
    for phase in (patient.ed_phase, patient.es_phase):
        for s in range(patient.slices):
            if (phase, s) not in patient.endocardium:
                continue
            number = patient.instance_number(s, phase)
            for kind, polygons in (("i", patient.endocardium), ("o", patient.epicardium)):
                path = (
                    contour_folder
                    / f"{kind}-contours"
                    / (f"IM-0001-{number:04d}-{kind}contour-manual.txt")
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                contours.write_contour(path, polygons[(phase, s)])


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _nifti_affine(patient: PhantomPatient) -> np.ndarray:
    """RAS+ affine of volumes indexed [col, row, slice], from the DICOM (LPS) geometry."""
    orientation = np.asarray(patient.image_orientation, float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * patient.pixel_spacing_mm[1]
    affine[:3, 1] = col_dir * patient.pixel_spacing_mm[0]
    affine[:3, 2] = normal * patient.slice_spacing_mm
    affine[:3, 3] = patient.image_positions_mm[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _write_nifti_patient(patient: PhantomPatient, folder: Path) -> str:
    """One patient in the ACDC layout; returns its folder name."""
    name = f"patient{patient.index + 1:03d}"
    target = folder / name
    target.mkdir()
    affine = patient.affine()
    zooms = (patient.pixel_spacing_mm[1], patient.pixel_spacing_mm[0], patient.slice_spacing_mm)
    cine = patient.images.astype(np.int16).transpose(3, 2, 1, 0)  # -> [col, row, slice, phase]
    _write_nifti(target / f"{name}_4d.nii.gz", cine, affine, (*zooms, 1.0))
    for phase in (patient.ed_phase, patient.es_phase):
        i = patient.row(phase)
        frame = f"{name}_frame{phase + 1:02d}"
        _write_nifti(target / f"{frame}.nii.gz", cine[..., i], affine, zooms)
        labels = np.zeros(patient.images.shape[1:], np.uint8)
        labels[patient.rv[i]] = ACDC_LABELS[RV]
        labels[patient.myocardium[i]] = ACDC_LABELS[MYOCARDIUM]
        labels[patient.lv[i]] = ACDC_LABELS[LV]
        _write_nifti(target / f"{frame}_gt.nii.gz", labels.transpose(2, 1, 0), affine, zooms)
    info = (
        f"ED: {patient.ed_phase + 1}\n"
        f"ES: {patient.es_phase + 1}\n"
        f"Group: {ACDC_GROUPS[patient.group]}\n"
        f"Height: {patient.height_cm:.1f}\n"
        f"NbFrame: {PHASES}\n"
        f"Weight: {patient.weight_kg:.1f}\n"
    )
    (target / "Info.cfg").write_text(info, encoding="utf-8")
    return name


def _write_nifti(
    path: Path, data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...]
) -> None:
    """A gzipped NIfTI-1 file with a zero gzip timestamp, so the bytes are reproducible."""
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header["descrip"] = b"lvseg phantom"
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))


# --------------------------------------------------------------------------------------------
# Reading a written phantom, and the embedded default


def looks_like(path: str | Path) -> bool:
    """True for a folder written by :func:`write_phantom` (it holds ``phantom.json``)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ``phantom.json`` of a written phantom, checked."""
    manifest_path = Path(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(path, f"no {MANIFEST}: not an lvseg phantom folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(manifest_path, f"cannot read manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise InvalidInputError(manifest_path, "manifest has no valid 'format' (dicom or nifti)")
    if not isinstance(manifest.get("patients"), list):
        raise InvalidInputError(manifest_path, "manifest has no 'patients' list")
    return manifest


def read(path: str | Path, skip_invalid: bool = False, **options: Any) -> Dataset:
    """Read a written phantom through the real reader of its format (format ``"phantom"``).

    The literal path ``"phantom"``, where no such folder exists, reads the embedded default
    phantom (generated into the cache on first use, see :func:`ensure_default_phantom`).
    Records get the phantom's group names (``N``, ``HF-I``, ``HF-NI``, ``HYP``).
    """
    root = Path(path)
    if str(path) == "phantom" and not root.exists():
        root = ensure_default_phantom()
    if not root.is_dir():
        raise InvalidInputError(root, "no such folder")
    manifest = read_manifest(root)
    from lvseg.data.load import reader

    name = "sunnybrook" if manifest["format"] == "dicom" else "nifti"
    module = reader(name)
    parameters = inspect.signature(module.read).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(options) - set(parameters))
        if unknown:
            raise InvalidInputError(
                root, f"the {name} reader of this phantom takes no option {', '.join(unknown)}"
            )
    inner = module.read(root, skip_invalid=skip_invalid, **options)
    # One id and group per patient whatever the format: the original id, e.g. "PH-N-01".
    names: dict[str, tuple[str, str | None]] = {}
    for entry in manifest["patients"]:
        if isinstance(entry, dict) and "original_id" in entry:
            for key in ("patient_id", "original_id", "nifti_id"):
                if key in entry:
                    names[str(entry[key])] = (str(entry["original_id"]), entry.get("group"))
    records = []
    for record in inner:
        patient_id, group = names.get(record.patient_id, (record.patient_id, record.group))
        records.append(record.replace(patient_id=patient_id, group=group or record.group))
    return Dataset(records=records, format="phantom", root=str(root), skipped=list(inner.skipped))


def default_phantom_dir(
    patients: int | None = None, seed: int | None = None, format: str | None = None
) -> Path:
    """Where the embedded phantom with these parameters (default: 8 patients, seed 0, DICOM)
    lives in the cache."""
    patients = DEFAULT_PATIENTS if patients is None else patients
    seed = DEFAULT_SEED if seed is None else seed
    format = DEFAULT_FORMAT if format is None else format
    return cache_dir() / f"phantom-v{PHANTOM_VERSION}-{format}-{patients}p-seed{seed}"


def ensure_default_phantom(
    patients: int | None = None, seed: int | None = None, format: str | None = None
) -> Path:
    """The embedded phantom's folder, written (atomically) on first use."""
    patients = DEFAULT_PATIENTS if patients is None else patients
    seed = DEFAULT_SEED if seed is None else seed
    format = DEFAULT_FORMAT if format is None else format
    folder = default_phantom_dir(patients, seed, format)
    if looks_like(folder):
        return folder
    try:
        write_phantom(
            folder, patients=patients, seed=seed, format=format, overwrite=folder.exists()
        )
    except InvalidInputError:
        if not looks_like(folder):  # lost a race with another process: use its folder
            raise
    return folder


CONTRASTS = ("ssfp", "random")
"""How tissues look: ``ssfp``, the balanced-SSFP cine contrast drawn within realistic ranges
(bright blood, dark myocardium); ``random``, domain randomisation as SynthSeg does it (Billot et
al. 2023): every tissue's value drawn anew and independently per patient (0 to 1.5, the blood
0.3 to 1.5, a gamma of 0.5 to 2), so that a model must learn shapes, not one contrast. The anatomy,
motion, labels and acquisition stay as drawn; only :attr:`_Anatomy.values` and the gamma change
(their own random stream, so the same patient keeps its heart)."""


def _randomised(anat: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """``anat`` with SynthSeg-style random tissue values and gamma (see :data:`CONTRASTS`)."""
    values = {key: float(rng.uniform(0.0, 1.5)) for key in anat.values if key != "clutter_scale"}
    values["blood"] = float(rng.uniform(0.3, 1.5))
    values["clutter_scale"] = anat.values["clutter_scale"]
    return replace(anat, values=values, gamma=float(rng.uniform(0.5, 2.0)))


_ACQUISITION_RANGES = {
    "spacing": (0.3, 5.0),
    "thickness": (1.0, 30.0),
    "rotation": (-2 * math.pi, 2 * math.pi),
    "gamma": (0.1, 10.0),
    "noise": (0.0, 1.0),
    "k_fraction": (0.05, 1.0),
    "k_taper": (0.0, 1.0),
    "heart_offset_mm": (-300.0, 300.0),
}


def _checked_acquisition(acquisition: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(acquisition) - set(ACQUISITION))
    if unknown:
        raise InvalidInputError(
            None,
            f"unknown acquisition setting(s) {', '.join(unknown)}; "
            f"choose from {', '.join(ACQUISITION)}",
        )
    checked: dict[str, Any] = {}
    for key, value in acquisition.items():
        if key == "fov_kind":
            if value not in ("none", "circle", "curved"):
                raise InvalidInputError(
                    None, f"fov_kind must be none, circle or curved, got {value!r}"
                )
            checked[key] = value
            continue
        pair = key in ("k_fraction", "heart_offset_mm")
        values = tuple(value) if pair else (value,)
        low, high = _ACQUISITION_RANGES.get(key, (0.0, math.inf))
        if len(values) != (2 if pair else 1) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
            for v in values
        ):
            raise InvalidInputError(
                None, f"acquisition {key} ({ACQUISITION[key]}) out of range: {value!r}"
            )
        checked[key] = tuple(float(v) for v in values) if pair else float(value)
    return checked


def _check_contrast(contrast: str) -> None:
    if contrast not in CONTRASTS:
        raise InvalidInputError(
            None, f"unknown contrast {contrast!r}; choose {' or '.join(CONTRASTS)}"
        )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(None, f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise InvalidInputError(None, f"{name} must be in {low}..{high}, got {value}")
