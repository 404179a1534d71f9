"""Drawing one patient's anatomy, motion, appearance and acquisition."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lvseg.errors import InvalidInputError

GROUPS = ("N", "HF-I", "HF-NI", "HYP")
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


@dataclass
class Blob:
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
class Anatomy:
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
    body: Blob
    subcutaneous_fat: float
    chest_muscle: float
    inside_cavity: list[Blob]
    arms: list[Blob]
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


def sample_anatomy(rng: np.random.Generator, group: str) -> Anatomy:
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
    body = Blob(  # its centre lies posterior (screen down) of the heart
        centre=(u(-20, 35), body_b - anterior_gap),
        axes=(u(185, 260), body_b),
        angle=u(-0.35, 0.35),
        harmonics=_harmonics(rng, 4, 0.03),
        value=0.0,
    )
    subcutaneous_fat = u(6, 28)
    chest_muscle = u(8, 25)
    inside_cavity: list[Blob] = []
    # lungs: left lung lateral (screen right), right lung beyond the RV (screen left, anterior)
    inside_cavity.append(
        Blob(
            (u(55, 85), u(-10, 30)),
            (u(40, 65), u(55, 90)),
            u(-0.6, 0.6),
            _harmonics(rng, 4, 0.06),
            0.0,
        )
    )
    inside_cavity.append(
        Blob(
            (u(-95, -60), u(-40, 0)),
            (u(30, 55), u(50, 85)),
            u(-0.6, 0.6),
            _harmonics(rng, 4, 0.06),
            0.0,
        )
    )
    # liver (screen lower left), stomach (lower right), spine and descending aorta (posterior)
    inside_cavity.append(
        Blob(
            (u(-75, -25), u(55, 100)),
            (u(55, 95), u(40, 70)),
            u(-0.5, 0.5),
            _harmonics(rng, 3, 0.05),
            0.0,
        )
    )
    inside_cavity.append(
        Blob(
            (u(25, 80), u(60, 105)),
            (u(22, 55), u(18, 45)),
            u(-1.0, 1.0),
            _harmonics(rng, 3, 0.08),
            0.0,
        )
    )
    aorta_centre = (u(10, 45), u(52, 80))
    spine_centre = (aorta_centre[0] + u(-45, -25), aorta_centre[1] + u(8, 25))
    inside_cavity.append(Blob(spine_centre, (u(14, 19),) * 2, 0.0, _harmonics(rng, 3, 0.05), 0.0))
    inside_cavity.append(Blob(aorta_centre, (u(9, 13),) * 2, 0.0, (), 0.0, rim=u(1.0, 2.5)))
    arms = []
    for side in (-1.0, 1.0):  # the oblique plane often cuts an arm beside the anterior chest
        if u() < 0.35:
            arms.append(
                Blob(
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
    organs = ("lung", "lung", "liver", "stomach", "spine", "aorta")  # the order slice_scene uses
    for blob, key in zip(inside_cavity, organs, strict=True):
        blob.value = values[key]
    for arm in arms:
        arm.value = values["muscle"]
    # organ clutter: bowel, vessels, spleen... in the abdomen and around the thorax
    for _ in range(int(rng.integers(4, 13))):
        angle = u(0.0, math.pi) if u() < 0.75 else u(-math.pi, 0.0)
        distance = u(75, 150)
        inside_cavity.append(
            Blob(
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
            Blob(
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
    return Anatomy(
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


CONTRASTS = ("ssfp", "random")
"""How tissues look: ``ssfp``, the balanced-SSFP cine contrast drawn within realistic ranges
(bright blood, dark myocardium); ``random``, domain randomisation as SynthSeg does it (Billot et
al. 2023): every tissue's value drawn anew and independently per patient (0 to 1.5, the blood
0.3 to 1.5, a gamma of 0.5 to 2), so that a model must learn shapes, not one contrast. The anatomy,
motion, labels and acquisition stay as drawn; only :attr:`Anatomy.values` and the gamma change
(their own random stream, so the same patient keeps its heart)."""


def with_random_contrast(anat: Anatomy, rng: np.random.Generator) -> Anatomy:
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


def checked_acquisition(acquisition: dict[str, Any]) -> dict[str, Any]:
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


def check_contrast(contrast: str) -> None:
    if contrast not in CONTRASTS:
        raise InvalidInputError(
            None, f"unknown contrast {contrast!r}; choose {' or '.join(CONTRASTS)}"
        )
