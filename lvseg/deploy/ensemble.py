"""Several trained models as one: the mean of their class probabilities, as one network.

``lvseg export RUN1 RUN2 ...`` (the k fold models of a cross-validation, or runs of several
seeds) writes one ONNX graph that runs every member and averages them, so ``predict`` and
``evaluate`` use an ensemble exactly as they use one model (the segmenter sees one network).

The graph's output stays "logits": ``log(mean_m softmax(z_m))``. Its softmax is the mean
probability itself (the mean sums to one over classes), so thresholding at 0.5 downstream gives
the averaged decision, and test-time augmentation on top averages probabilities again.

Members must prepare their inputs alike: the same target spacing, crop size, intensity
normalisation and interpolation (what inference uses of a plan; the training jitter may
differ between folds). The ensemble's split says what no member saw: a patient is held out
only where every member held it out; every member's training patients count as trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from lvseg.data.splits import Split
from lvseg.errors import InvalidInputError
from lvseg.model.outputs import SegmentationOutput
from lvseg.runs.checkpoint import LoadedModel, load_model

INFERENCE_FIELDS = (
    "target_spacing_mm",
    "assumed_spacing_mm",
    "crop_size",
    "clip_percentiles",
    "normalisation",
    "image_order",
)
"""The plan fields that decide how an input is prepared at inference."""


class Ensemble(nn.Module):
    """Members run on the same input; class probabilities averaged (returned as log-probs)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, image: torch.Tensor) -> SegmentationOutput:
        outputs = [member(image) for member in self.members]
        probability = torch.stack([o.logits.float().softmax(dim=1) for o in outputs]).mean(0)
        presence = torch.stack([o.presence_logit.float() for o in outputs]).mean(0)
        return SegmentationOutput(probability.clamp_min(1e-12).log(), presence)


def merged_split(splits: Sequence[Split | None]) -> Split | None:
    """What the ensemble trained on (any member), held out (every member), kept out (any)."""
    if any(s is None for s in splits):
        return None
    train = sorted({p for s in splits for p in s.train})
    val = sorted(set.intersection(*(set(s.val) for s in splits)) - set(train))
    test = sorted({p for s in splits for p in s.test} - set(train) - set(val))
    return Split(tuple(train), tuple(val), tuple(test))


def load_ensemble(specs: Sequence[str | Path]) -> LoadedModel:
    """The models of ``specs`` (runs or checkpoints) as one :class:`LoadedModel`."""
    members = [load_model(spec) for spec in specs]
    first = members[0]
    for member in members[1:]:
        for name in INFERENCE_FIELDS:
            if getattr(member.plan, name) != getattr(first.plan, name):
                raise InvalidInputError(
                    member.source,
                    f"prepares its inputs unlike {first.source} ({name} "
                    f"{getattr(member.plan, name)} against {getattr(first.plan, name)}): "
                    "an ensemble's members must share the inference plan",
                )
    names = sorted({m.name for m in members})
    checkpoint = replace(
        first.checkpoint,
        model_name=f"ensemble of {len(members)} {'/'.join(names)}",
        split=merged_split([m.checkpoint.split for m in members]),
        epoch=None,
        metrics={},
    )
    return LoadedModel(
        model=Ensemble([m.model for m in members]).eval(),
        checkpoint=checkpoint,
        source=first.source,
    )
