"""Run configuration: every knob of a training run in one dataclass tree, saved with the run.

A config is data. ``lvseg train`` builds a :class:`TrainConfig` from the defaults, then a
``--config`` file (TOML or JSON, the same nesting as :meth:`TrainConfig.to_dict`), then the
command-line options; the run store saves the result as ``config.json``, and
``lvseg train --config runs/NAME/config.json`` runs it again.

Unknown keys and out-of-range values are refused with one line naming the file and the key:

>>> TrainConfig.from_dict({"optim": {"lr": -1}}, source="run.toml")
Traceback (most recent call last):
...
lvseg.errors.InvalidInputError: run.toml: optim.lr must be > 0, got -1
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from lvseg.errors import InvalidInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "onecycle", "constant")


@dataclass
class DataConfig:
    path: str = "phantom"
    """A dataset folder, or ``phantom`` for the embedded phantom (written to the cache once)."""
    format: str = "auto"
    val_fraction: float = 0.2
    """Share of *patients* (never slices) held out for validation, stratified by group."""
    folds: int = 0
    """With ``folds >= 2``, train fold ``fold`` of a patient-level K-fold split instead."""
    fold: int = 0
    exclude_patients: list[str] = field(default_factory=list)
    """Patients kept out of training and validation entirely (e.g. an external test set)."""
    train_patients: int = 0
    """With > 0, train on only this many of the split's training patients (a stratified, seeded
    choice; the smaller counts are subsets of the larger), validation unchanged: learning
    curves."""
    split_train: list[str] = field(default_factory=list)
    """A fixed split (``lvseg train --split FILE``, e.g. a file of ``lvseg data split``): with
    patients here, these train and ``split_val``'s validate, every other patient of the data is
    held out (the split's test set), and ``folds``, ``fold`` and ``val_fraction`` are unused."""
    split_val: list[str] = field(default_factory=list)
    target_spacing_mm: float | None = None
    """Override the planned in-plane spacing (mm); by default the plan takes the data's median."""
    far_crops: float = 0.15
    """Share of training crops placed anywhere within half a crop of the heart (its edge or half
    of it out of view, and what lies around it), not just jittered: the network learns what is
    not LV away from the heart, so locating it on whole images does not take the chest wall."""
    pixel_spacing_mm: float | None = None
    """The in-plane spacing (mm) of images that store none (PNG folders); saved in the plan, so
    evaluate and predict give it to such images too. Sunnybrook exports get theirs by name."""


@dataclass
class ModelConfig:
    name: str = "lvnet"
    options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model's own config, e.g. ``{width = 16}``; see ``lvseg model info``."""
    init: str | None = None
    """Start from the weights of another run (its selected, best or last checkpoint) or of a
    ``.pt`` checkpoint, of the same model and options (fine-tuning; e.g. a run on the phantom);
    None starts from scratch."""


@dataclass
class OptimConfig:
    epochs: int = 50
    """The strong augmentation of the default recipe needs longer than the 40 epochs of the
    milder one (12.4 min a fold of the Sunnybrook cross-validation on 2 CPU cores)."""
    batch_size: int = 16
    lr: float = 3e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    """``cosine``: linear warm-up then cosine decay to 1% (per step); ``onecycle``: PyTorch's
    OneCycleLR; ``constant``: warm-up then flat."""
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: off)."""
    early_stopping: int = 12
    """Stop after this many epochs without a better validation Dice (0: never)."""
    min_delta: float = 1e-4
    max_nonfinite_steps: int = 20
    """Stop the run after this many non-finite steps in a row (each one is skipped)."""


@dataclass
class LossConfig:
    dice: float = 1.0
    """Weight of the soft Dice loss on the LV channel (computed per image, then averaged)."""
    cross_entropy: float = 1.0
    """Weight of the pixel-wise cross-entropy over background and LV."""
    presence: float = 0.1
    """Weight of the binary cross-entropy of the image-level "LV present" logit."""
    smooth: float = 1.0
    """Added to numerator and denominator of the soft Dice, so empty slices are well defined."""
    boundary: float = 0.0
    """Extra cross-entropy weight of the pixels near a mask's edge (0: a plain pixel average;
    see :mod:`lvseg.train.losses`)."""


@dataclass
class RuntimeConfig:
    device: str = "auto"
    precision: str = "auto"
    """``auto``: bf16 autocast on CUDA devices that support it, else fp16 with a grad scaler on
    older CUDA devices, fp32 on CPU and MPS."""
    channels_last: bool = True
    """Channels-last memory format on CUDA (tensor cores like it); ignored on CPU."""
    compile: bool = False
    """``torch.compile`` the model (CUDA; slow to start, faster per step)."""
    deterministic: bool = False
    """Deterministic algorithms and seeded everything: a resumed run equals an uninterrupted one."""
    threads: int = 0
    """CPU threads for PyTorch (0: PyTorch's default)."""


@dataclass
class MonitorConfig:
    """The live monitor's probes and alerts (see :mod:`lvseg.monitor.probes`, ``alerts``)."""

    enabled: bool = True
    interval: int = 10
    """Log per-layer statistics on step 1 and every ``interval`` steps (nothing in between)."""
    histogram_every: int = 10
    """A gradient histogram per layer every this many logged steps (0: never)."""
    activations: bool = True
    """Also hook every activation layer (mean, std, fraction of exact zeros)."""
    watch_slices: int = 4
    """Fixed validation slices whose prediction and CAM are recorded every epoch (0: none)."""
    vanishing_floor: float = 1e-7
    """A layer's gradient L2 norm below this ..."""
    vanishing_steps: int = 5
    """... for this many logged steps in a row raises a "vanishing" alert."""
    exploding_ceiling: float = 100.0
    """A layer's gradient L2 norm above this raises an "exploding" alert ..."""
    exploding_jump: float = 20.0
    """... and so does a jump to this many times its running median."""
    jump_window: int = 20
    """Logged steps in the running median (a jump is judged once 5 are known)."""
    dead_fraction: float = 0.95
    """An activation layer with more than this share of exact zeros raises "dead_units"."""
    tensorboard: bool = False
    """Also write the scalars, histograms and watch pictures as TensorBoard event files."""


@dataclass
class TrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`lvseg.data.augment.AugmentConfig` (probabilities and ranges)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> TrainConfig:
        """Build and validate a config; unknown keys or bad values raise InvalidInputError."""
        config = _build(cls, data, source, prefix="")
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a TOML or JSON config file."""
        return cls.from_dict(read_config_file(path), source=str(path))

    def merged(self, overrides: dict[str, Any], source: str | None = None) -> TrainConfig:
        """A copy with ``overrides`` (nested like :meth:`to_dict`) applied and validated."""
        return TrainConfig.from_dict(_deep_merge(self.to_dict(), overrides), source)

    def validate(self, source: str | None = None) -> None:
        def bad(key: str, rule: str, value: Any) -> InvalidInputError:
            return InvalidInputError(source, f"{key} must be {rule}, got {value!r}")

        def positive(key: str, value: float, strict: bool = True) -> None:
            if not math.isfinite(value) or value < 0 or (strict and value == 0):
                raise bad(key, "> 0" if strict else ">= 0", value)

        def choice(key: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                raise bad(key, "one of " + ", ".join(options), value)

        if self.seed < 0:
            raise bad("seed", ">= 0", self.seed)
        data, optim, loss, runtime = self.data, self.optim, self.loss, self.runtime
        from lvseg.data.load import FORMATS

        choice("data.format", data.format, FORMATS)
        if not 0 <= data.far_crops <= 1:
            raise bad("data.far_crops", "in [0, 1]", data.far_crops)
        if not 0 <= data.val_fraction < 1:
            raise bad("data.val_fraction", "in [0, 1)", data.val_fraction)
        if data.folds == 1 or data.folds < 0:
            raise bad("data.folds", "0 (single split) or >= 2", data.folds)
        if data.train_patients < 0:
            raise bad("data.train_patients", ">= 0", data.train_patients)
        if data.folds and not 0 <= data.fold < data.folds:
            raise bad("data.fold", f"in 0..{data.folds - 1}", data.fold)
        if data.split_val and not data.split_train:
            raise bad("data.split_train", "given with data.split_val", data.split_train)
        if data.split_train and data.folds:
            raise bad("data.folds", "0 with a fixed split (data.split_train)", data.folds)
        for key in ("target_spacing_mm", "pixel_spacing_mm"):
            if getattr(data, key) is not None:
                positive(f"data.{key}", getattr(data, key))
        for key in ("epochs", "batch_size"):
            value = getattr(optim, key)
            if value < 1:
                raise bad(f"optim.{key}", ">= 1", value)
        positive("optim.lr", optim.lr)
        positive("optim.weight_decay", optim.weight_decay, strict=False)
        positive("optim.warmup_epochs", optim.warmup_epochs, strict=False)
        positive("optim.grad_clip", optim.grad_clip, strict=False)
        positive("optim.min_delta", optim.min_delta, strict=False)
        choice("optim.schedule", optim.schedule, SCHEDULES)
        if optim.early_stopping < 0:
            raise bad("optim.early_stopping", ">= 0", optim.early_stopping)
        if optim.max_nonfinite_steps < 1:
            raise bad("optim.max_nonfinite_steps", ">= 1", optim.max_nonfinite_steps)
        for key in ("dice", "cross_entropy", "presence", "boundary"):
            positive(f"loss.{key}", getattr(loss, key), strict=False)
        if loss.dice == 0 and loss.cross_entropy == 0:
            raise bad("loss.dice or loss.cross_entropy", "> 0 (something must train)", 0)
        positive("loss.smooth", loss.smooth, strict=False)
        choice("runtime.device", runtime.device, DEVICES)
        choice("runtime.precision", runtime.precision, PRECISIONS)
        if runtime.threads < 0:
            raise bad("runtime.threads", ">= 0", runtime.threads)
        monitor = self.monitor
        for key in ("interval", "vanishing_steps", "jump_window"):
            if getattr(monitor, key) < 1:
                raise bad(f"monitor.{key}", ">= 1", getattr(monitor, key))
        for key in ("histogram_every", "watch_slices"):
            if getattr(monitor, key) < 0:
                raise bad(f"monitor.{key}", ">= 0", getattr(monitor, key))
        for key in ("vanishing_floor", "exploding_ceiling"):
            positive(f"monitor.{key}", getattr(monitor, key))
        if not monitor.exploding_jump > 1:
            raise bad("monitor.exploding_jump", "> 1", monitor.exploding_jump)
        if not 0 < monitor.dead_fraction <= 1:
            raise bad("monitor.dead_fraction", "in (0, 1]", monitor.dead_fraction)
        from lvseg.data.augment import AugmentConfig

        known = {f.name for f in fields(AugmentConfig)}
        for key in self.augment:
            if key not in known:
                raise InvalidInputError(source, f"unknown key augment.{key}")
        for key, value in self.augment.items():
            if key.startswith("p_") and not (isinstance(value, int | float) and 0 <= value <= 1):
                raise bad(f"augment.{key}", "a probability in [0, 1]", value)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict of a ``.toml`` or ``.json`` config; unreadable files raise one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(path, "no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(path, f"cannot read config ({error})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidInputError(path, f"not valid {kind} ({error})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(path, "a config must be a table of sections")
    return data


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "options":
            merged[key] = _deep_merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


# Keys a config once had and no longer has, read and dropped so that the config.json of an older
# run (and the config inside its checkpoints) still loads: runtime.workers was validated but never
# used (batches are sliced from a memory-mapped cache in the main process).
_RETIRED_KEYS: dict[type, frozenset[str]] = {RuntimeConfig: frozenset({"workers"})}


def _build(cls: type, data: Any, source: str | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and scalar types."""
    if not isinstance(data, dict):
        raise InvalidInputError(source, f"{prefix.rstrip('.') or 'config'} must be a table")
    retired = _RETIRED_KEYS.get(cls, frozenset())
    data = {key: value for key, value in data.items() if key not in retired}
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            where = f" in [{prefix.rstrip('.')}]" if prefix else ""
            raise InvalidInputError(source, f"unknown key {key!r}{where}")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        name = prefix + key
        if isinstance(hint, type) and is_dataclass(hint):
            values[key] = _build(hint, value, source, name + ".")
        else:
            values[key] = _check_type(name, hint, value, source)
    return cls(**values)


def _check_type(name: str, hint: Any, value: Any, source: str | None) -> Any:
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise InvalidInputError(source, f"{name} must not be empty")
    if hint is bool or text.startswith("bool"):
        if not isinstance(value, bool):
            raise InvalidInputError(source, f"{name} must be true or false, got {value!r}")
        return value
    if hint is int or text.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(source, f"{name} must be an integer, got {value!r}")
        return value
    if hint is float or text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(source, f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str or text.startswith("str"):
        if not isinstance(value, str):
            raise InvalidInputError(source, f"{name} must be a string, got {value!r}")
        return value
    if text.startswith("list[str]"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise InvalidInputError(source, f"{name} must be a list of strings, got {value!r}")
        return list(value)
    if text.startswith("dict"):
        if not isinstance(value, dict):
            raise InvalidInputError(source, f"{name} must be a table, got {value!r}")
        return dict(value)
    return value
