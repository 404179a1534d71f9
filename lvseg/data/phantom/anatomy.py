"""One synthetic patient's anatomy, motion, appearance and acquisition, drawn at random.

:func:`sample_anatomy` draws an :class:`Anatomy` from a NumPy generator, one small part after
another. The order of the draws fixes every byte the phantom writes: change it (or a range) and
bump ``PHANTOM_VERSION``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from lvseg.data.phantom.thorax import Blob, Thorax, sample_clutter, sample_thorax

GROUPS = ("N", "HF-I", "HF-NI", "HYP")
"""The Sunnybrook groups: ``N`` normal, ``HF-NI`` dilated, thin-walled, globally hypokinetic (low
EF), ``HF-I`` dilated with an akinetic thinned infarct sector, ``HYP`` thick wall (sometimes
asymmetric septal) and small cavity. Patient *k* is in group ``GROUPS[k % 4]`` so every split can
be stratified."""
_MEASURES = ("lv_radius", "wall", "ef", "long_axis", "descent")
_RANGES = {
    # uniform ranges: ED endocardial radius at the equator (mm), ED wall thickness (mm), ejection
    # fraction, long axis base->endocardial apex (mm), systolic descent of the base (mm)
    #         lv_radius wall        ef            long_axis   descent
    "N":     ((22, 28), (8, 11.5),  (0.55, 0.70), (75, 92),   (8, 14)),
    "HF-NI": ((29, 38), (6, 8.5),   (0.12, 0.35), (85, 105),  (3, 8)),
    "HF-I":  ((27, 36), (7, 10),    (0.18, 0.40), (82, 102),  (4, 9)),
    "HYP":   ((17, 25), (13, 18),   (0.55, 0.78), (70, 88),   (6, 10)),
}  # fmt: skip
GROUP_ANATOMY = {group: dict(zip(_MEASURES, row, strict=True)) for group, row in _RANGES.items()}
"""Each group's ranges by measure: ``GROUP_ANATOMY["N"]["ef"] == (0.55, 0.70)``."""


# --------------------------------------------------------------------------------------------
# The parts of a patient


@dataclass
class ImagePlane:
    """The image: matrix, pixel spacing, slice thickness and spacing, and where the heart sits.

    Field of view, matrix (192-256), pixel spacing (1.2-2.0 mm), heart position, in-plane
    orientation and slice thickness vary between patients.
    """

    rows: int
    cols: int
    spacing: float  # mm per pixel at full resolution
    thickness: float  # slice thickness, mm
    slice_spacing: float  # between slice centres, mm
    heart_px: tuple[float, float]  # LV centre (row, col) in pixels at z = 0, full resolution
    rotation: float  # in-plane rotation of the anatomy, radians (0: the standard view)
    drift: tuple[float, float]  # (u, v) of the heart centre per mm along the long axis


@dataclass
class LeftVentricle:
    """The LV at end-diastole: a truncated prolate spheroid along the slice axis.

    The endocardial and epicardial radii shrink from base to apex (the epicardium reaches further,
    so the most apical slices show a myocardial cap or nothing). In-plane, every boundary is a
    radius function of the angle around the LV centre with low-order Fourier perturbations, so
    each patient has its own irregular, slightly elliptic LV and wall-thickness pattern.
    """

    radius: float  # endocardial radius at the equator, mm
    wall: float  # wall thickness, mm
    long_axis: float  # base to the endocardial apex, mm
    apex_cap: float  # myocardium beyond the endocardial apex, mm
    equator: float  # the widest section's distance from the base, mm
    endo_base: np.ndarray  # (K, 2) Fourier cos/sin coefficients, harmonics 1..K
    endo_apex: np.ndarray
    thick_coef: np.ndarray  # harmonics 1..3 of the relative wall thickness
    infarct: tuple[float, float, float, float] | None  # angle, half width, zeta0, zeta1
    septal_boost: float  # asymmetric septal hypertrophy (0: none)


@dataclass
class Motion:
    """How the LV contracts over the 20 phases from end-diastole (phase 0) to ``es_phase``."""

    ef: float  # the nominal ejection fraction the cavity scale is chosen from
    es_phase: int
    cavity_scale_es: float  # ES over ED cavity radius
    base_descent: float  # how far the base descends toward the apex at ES, mm


@dataclass
class RightVentricle:
    """A crescent wrapping the septum: its width tapers to zero at the insertion points and
    toward the apex; a thin free wall."""

    angle: float  # where it lies around the LV centre, radians
    power: float  # crescent profile: flat and round (< 1) to pointed (> 1)
    half_width: float  # angular half width, radians
    width: float  # at its widest, mm
    wall: float  # free wall, mm
    extent: float  # the fraction of the LV long axis it reaches
    contraction: float  # its width at ES relative to ED is 1 - contraction


@dataclass
class EpicardialFat:
    """Epicardial fat around the heart (a dark pericardial line lies outside it)."""

    coef: np.ndarray  # Fourier coefficients of its thickness around the heart, mm
    mean: float  # mm (clipped at 0 where the harmonics take it below)


@dataclass
class BloodPool:
    """What makes the LV blood pool uneven; by Sunnybrook convention all of it counts as LV.

    Papillary muscles and trabeculations are dark blobs inside the bright pool, and the pool
    brightens only gradually inward from the free wall over several mm (trabeculated,
    slow-flowing periphery; the septum is smooth), as the intensity profiles across the expert
    contours of the Sunnybrook images show.
    """

    papillary: tuple[tuple[float, float, float], ...]  # angle, radius mm, second-head weight
    trabecular_depth: float  # mm over which the pool brightens inward from the wall, at ED
    trabecular_power: float  # shape of that ramp (< 1: quick, > 1: slow)
    trabecular_coef: np.ndarray  # harmonics 3..16 of its jagged inner edge
    trabeculae: tuple[tuple[float, float, float], ...]  # angle, radius mm, zeta


@dataclass
class HeartBase:
    """What basal slices show beside the LV: the left atrium and the aortic root (bright blood
    that is not LV)."""

    la_angle: float
    la_radius: float
    aortic_root_angle: float
    aortic_root_radius: float


@dataclass
class Tissues:
    """Tissue values relative to LV blood (balanced SSFP: bright blood and fat, dark myocardium,
    intermediate organs)."""

    blood: float
    rv_blood: float
    atrium: float
    aorta: float
    myocardium: float
    fat: float
    epicardial_fat: float
    pericardium: float
    muscle: float
    mediastinum: float
    lung: float
    lung_vessel: float
    liver: float
    stomach: float
    spine: float


@dataclass
class Contrast:
    """How the tissues look: their values, a contrast curve and a smooth texture."""

    tissues: Tissues
    gamma: float  # the image is the tissue values to this power
    texture: float  # amplitude of the multiplicative tissue texture


@dataclass
class Scanner:
    """The acquisition's k-space, noise, reconstruction field of view and intensity scale."""

    noise: float  # complex Gaussian noise in k-space (Rician in the magnitude image)
    k_fraction: tuple[float, float]  # (rows, cols) fraction of k-space acquired
    k_taper: float  # apodisation of the k-space edge (0: a hard cut)
    fov_kind: str  # none, circle or curved: the reconstruction's field-of-view mask
    fov_params: tuple[float, float, float]  # radius, offset, curvature
    scale: float  # the intensity of LV blood in the written integers


@dataclass
class Subject:
    """The patient's heart rate and size, as DICOM and ``Info.cfg`` record them."""

    heart_rate_bpm: int
    height_cm: float
    weight_kg: float


@dataclass
class SliceStack:
    """Where the slices lie: along the LV long axis, and in the scanner's (LPS) world."""

    z_slices: np.ndarray  # slice centres from the base (0) toward the apex, mm
    orientation: np.ndarray  # 3x3: row direction, column direction, normal (LPS)
    heart_world: np.ndarray  # the LV centre, mm
    position_offset: float  # slice position of the base, mm


@dataclass
class Anatomy:
    """One patient as drawn: the heart, the body around it, and how the scanner sees them."""

    group: str
    plane: ImagePlane
    lv: LeftVentricle
    motion: Motion
    rv: RightVentricle
    fat: EpicardialFat
    pool: BloodPool
    base: HeartBase
    thorax: Thorax
    clutter: tuple[Blob, ...]  # bowel, vessels, spleen...: ellipsoids over a few slices
    contrast: Contrast
    scanner: Scanner
    subject: Subject
    stack: SliceStack


# --------------------------------------------------------------------------------------------
# Drawing them


def sample_anatomy(rng: np.random.Generator, group: str) -> Anatomy:
    """Draw one patient's anatomy, motion, appearance and acquisition.

    The parts are drawn in this order (the order of the random stream, so keep it).
    """
    plane = _sample_plane(rng)
    lv, motion = _sample_left_ventricle(rng, group)
    rv = _sample_right_ventricle(rng, group)
    fat = EpicardialFat(
        coef=rng.normal(0.0, 1.0, (4, 2)) * np.array([1.5, 1.2, 0.8, 0.5])[:, None],
        mean=rng.uniform(-1.0, 2.5),
    )
    pool = _sample_blood_pool(rng, group, rv.angle)
    base = _sample_heart_base(rng, group)
    thorax = sample_thorax(rng)
    tissues = _sample_tissues(rng)
    thorax = _with_organ_values(thorax, tissues)
    clutter = sample_clutter(rng, lv.long_axis)
    # the slice stack's parts come at three points of the stream: orientation, slices, placement
    orientation = _sax_orientation(rng)
    z_slices = _slice_positions(rng, lv.long_axis, plane.slice_spacing)
    contrast = Contrast(tissues, gamma=rng.uniform(0.75, 1.3), texture=rng.uniform(0.04, 0.12))
    scanner = _sample_scanner(rng)
    subject = Subject(
        heart_rate_bpm=int(rng.integers(55, 90)),
        height_cm=round(rng.uniform(150, 195), 1),
        weight_kg=round(rng.uniform(50, 110), 1),
    )
    stack = SliceStack(
        z_slices=z_slices,
        orientation=orientation,
        heart_world=np.array([rng.uniform(-20, 20) for _ in range(3)]),
        position_offset=rng.uniform(-80, -20),
    )
    return Anatomy(
        group,
        plane,
        lv,
        motion,
        rv,
        fat,
        pool,
        base,
        thorax,
        clutter,
        contrast,
        scanner,
        subject,
        stack,
    )


def _sample_plane(rng: np.random.Generator) -> ImagePlane:
    u = rng.uniform
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
    return ImagePlane(rows, cols, spacing, thickness, slice_spacing, heart_px, rotation, drift)


def _sample_left_ventricle(rng: np.random.Generator, group: str) -> tuple[LeftVentricle, Motion]:
    u = rng.uniform
    ranges = GROUP_ANATOMY[group]
    radius, wall, ef, long_axis, descent = (
        u(*ranges[name]) for name in ("lv_radius", "wall", "ef", "long_axis", "descent")
    )
    apex_cap = wall * u(0.7, 1.1)
    equator = u(0.15, 0.3) * long_axis
    # Cavity area ratio so that volume ratio ~ (1 - EF) given the long-axis shortening.
    area_ratio = (1.0 - ef) * long_axis / (long_axis - descent)
    motion = Motion(
        ef=ef,
        es_phase=int(rng.integers(6, 10)) if group in ("N", "HYP") else int(rng.integers(7, 11)),
        cavity_scale_es=float(np.sqrt(np.clip(area_ratio, 0.04, 0.94))),
        base_descent=descent,
    )
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
    lv = LeftVentricle(
        radius,
        wall,
        long_axis,
        apex_cap,
        equator,
        endo_base,
        endo_apex,
        thick_coef,
        infarct,
        septal_boost,
    )
    return lv, motion


def _sample_right_ventricle(rng: np.random.Generator, group: str) -> RightVentricle:
    u = rng.uniform
    return RightVentricle(
        angle=math.pi + u(-0.7, 0.3),  # left of the LV on screen, a little anterior
        power=u(0.5, 1.5),
        half_width=u(1.0, 1.5),
        width=u(16, 32) * (1.2 if group.startswith("HF") else 1.0),
        wall=u(2.0, 3.5),
        extent=u(0.75, 0.95),
        contraction=u(0.3, 0.5) if group in ("N", "HYP") else u(0.1, 0.35),
    )


def _sample_blood_pool(rng: np.random.Generator, group: str, rv_angle: float) -> BloodPool:
    u = rng.uniform
    papillary_scale = 1.3 if group == "HYP" else 1.0
    papillary = (
        (u(-1.0, -0.4), u(2.5, 6.0) * papillary_scale, u(0.0, 1.0)),
        (u(1.6, 2.3), u(2.5, 6.0) * papillary_scale, u(0.0, 1.0)),
    )
    # Trabeculation, papillary bases, slow flow near the wall and the slice's partial volume make
    # the pool brighten gradually inward over several mm (measured on the Sunnybrook images).
    return BloodPool(
        papillary=papillary,
        trabecular_depth=u(3.0, 9.0) * (1.2 if group.startswith("HF") else 1.0),
        trabecular_power=u(0.8, 1.8),
        trabecular_coef=rng.normal(0.0, 1.0, (14, 2)) * np.linspace(0.16, 0.05, 14)[:, None],
        trabeculae=tuple(  # small dark spots along the free wall (away from the septum)
            (rv_angle + math.pi + u(-2.0, 2.0), u(0.7, 1.8), u(0.15, 1.0))
            for _ in range(int(rng.integers(4, 14)))
        ),
    )


def _sample_heart_base(rng: np.random.Generator, group: str) -> HeartBase:
    u = rng.uniform
    return HeartBase(
        la_angle=math.pi / 2 + u(-0.5, 0.3),
        la_radius=u(16, 26) * (1.2 if group.startswith("HF") else 1.0),
        aortic_root_angle=-math.pi / 2 - u(0.3, 1.0),
        aortic_root_radius=u(10, 14),
    )


def _sample_tissues(rng: np.random.Generator) -> Tissues:
    u = rng.uniform
    return Tissues(
        blood=1.0,
        rv_blood=u(0.85, 1.05),
        atrium=u(0.8, 1.0),
        aorta=u(0.6, 1.1),
        myocardium=u(0.12, 0.5),
        fat=u(0.9, 1.8),
        epicardial_fat=u(0.7, 1.4),
        pericardium=u(0.05, 0.2),
        muscle=u(0.12, 0.42),
        mediastinum=u(0.08, 0.5),
        lung=u(0.02, 0.08),
        lung_vessel=u(0.3, 0.8),
        liver=u(0.2, 0.8),
        stomach=float(rng.choice([u(0.05, 0.2), u(0.4, 0.8), u(0.8, 1.4)])),
        spine=u(0.3, 0.7),
    )


def _with_organ_values(thorax: Thorax, tissues: Tissues) -> Thorax:
    """The organs take the tissue values as drawn; a random contrast later changes the tissues
    but not these (:func:`~lvseg.data.phantom.overrides.with_random_contrast`)."""
    return replace(
        thorax,
        lungs=tuple(replace(lung, value=tissues.lung) for lung in thorax.lungs),
        liver=replace(thorax.liver, value=tissues.liver),
        stomach=replace(thorax.stomach, value=tissues.stomach),
        spine=replace(thorax.spine, value=tissues.spine),
        aorta=replace(thorax.aorta, value=tissues.aorta),
        arms=tuple(replace(arm, value=tissues.muscle) for arm in thorax.arms),
    )


def _sample_scanner(rng: np.random.Generator) -> Scanner:
    u = rng.uniform
    return Scanner(
        noise=u(0.015, 0.06),
        k_fraction=(u(0.5, 0.8), u(0.7, 0.95)) if u() < 0.5 else (u(0.7, 0.95), u(0.5, 0.8)),
        k_taper=u(0.0, 0.5),
        fov_kind=str(rng.choice(["none", "circle", "circle", "curved"])),
        fov_params=(u(0.42, 0.52), u(-0.04, 0.04), u(0.3, 1.2)),
        scale=u(700, 1500),
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
