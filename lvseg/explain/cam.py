"""Explanation maps for "LV here": CAM read off LVNet's head, and Seg-Grad-CAM for any model.

**CAM** (Zhou et al., CVPR 2016). LVNet's segmentation head is one 1x1 convolution over its last
feature maps F_k, so its class score maps are class activation maps. We explain the decision
"LV rather than background" at each pixel with the difference of the two score maps,

    M_cam(x, y) = S_lv(x, y) - S_bg(x, y)
                = sum_k (w_{lv,k} - w_{bg,k}) F_k(x, y) + (b_lv - b_bg),

computed from ``model.cam_weights()`` and the head's input, at full resolution: exact, no
gradients. Its sign matters (positive = evidence for LV); it is the logit of the LV probability
under the two-class softmax. Only a model that declares ``cam_weights()`` gets a CAM: the U-Net
and the DLI FCN do not (the FCN's class maps are upsampled by a learned transposed convolution),
and :class:`CAM` refuses them with a hint to use Grad-CAM.

**Seg-Grad-CAM** (Vinogradova, Dibrov and Myers, AAAI 2020): Grad-CAM (Selvaraju et al., 2017)
with the class score replaced by a score summed over a region R of pixels (by default the pixels
the model itself labels LV),

    y = sum_{(x, y) in R} (S_lv(x, y) - S_bg(x, y)),
    alpha_k = 1 / (h w) sum_{i, j} dy / dA_k(i, j),
    M_gradcam = ReLU(sum_k alpha_k A_k),

where A_k are the activations of a chosen layer (h x w); the map is upsampled bilinearly to the
input size. *One departure from the paper*, which sums the LV logit S_lv alone: under a softmax,
adding the same function to every class score changes nothing, so S_lv alone is not what the
prediction depends on, and a trained LVNet may well keep S_lv negative inside the LV (with S_bg
more negative there). On our disc toy model the paper's target gave an all-zero map at the
head. We sum the LV log-odds log(p_lv / (1 - p_lv)) = S_lv - logsumexp_{c != lv} S_c instead,
which is S_lv - S_bg for our two-class models: the quantity CAM shows (:meth:`Explainer.target`;
a subclass can override it). Read at the head itself (layer ``"head"``, A = S) Grad-CAM then is
exactly |R| / (H W) * ReLU(M_cam), so rectified CAM is its special case; the default layer is the
last convolution before the head, where it shows what the decoder relied on.

**Why our own base class** and not a library's: pytorch-grad-cam, the design we borrow (one base
class holds the hooks, each method overrides one small function, :meth:`Explainer.compute`),
needs torchvision, which does not import beside the CPU torch build we ship on. Captum's
``LayerGradCam`` imports and computes the same Grad-CAM (the tests check ours against it to
1e-5), but CAM, the activation galleries and the sanity check of
:mod:`lvseg.explain.faithfulness` want the same hooks and the same target on any layer; one
small base class keeps them one mechanism, in the house style, with no dependency at run time.

Hook details: a forward hook stores the layer's output and passes a clone on, so that an in-place
ReLU after the layer (as in the DLI FCN) cannot overwrite the stored activation; the gradient is
``torch.autograd.grad`` of the target with respect to that activation (parameter ``.grad`` is
never touched). A layer called several times in one forward pass keeps its last call.

>>> import torch
>>> from lvseg.model.registry import build_model
>>> model = build_model("lvnet", width=4)
>>> maps = make_explainer("gradcam", model)(torch.randn(2, 1, 32, 32))
>>> tuple(maps.shape), maps.dtype, default_layer(model, "gradcam")
((2, 32, 32), torch.float32, 'decoder.3.3.pointwise')
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lvseg.errors import InvalidInputError
from lvseg.model.classes import BACKGROUND_CLASS, LV_CLASS

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def conv_layer_names(model: nn.Module) -> list[str]:
    """Qualified names of every ``Conv2d`` / ``ConvTranspose2d`` of ``model``, in registration
    order (the order ``named_modules`` walks, which for our models is the order of the forward
    pass along each path)."""
    return [name for name, module in model.named_modules() if isinstance(module, CONV_TYPES)]


def _classes(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "classes", None)


def default_layer(model: nn.Module, method: str) -> str:
    """The layer a method reads by default.

    ``cam``: ``"head"``, the 1x1 CAM head (its input is read). ``gradcam``: the last convolution
    that still has feature maps, i.e. the last one (registration order) whose output is not the
    class scores: for LVNet the last decoder block's last convolution, for the U-Net the last
    convolution before ``head``, for the DLI FCN the last 3x3 convolution before ``score`` (the
    1x1 score layer and the transposed-convolution upsampling of the class maps are skipped).
    """
    _check_method(method)
    if method == "cam":
        return "head"
    convs = [
        (name, module) for name, module in model.named_modules() if isinstance(module, CONV_TYPES)
    ]
    if not convs:
        raise InvalidInputError(None, f"{type(model).__name__} has no convolution layer to explain")
    classes = _classes(model)
    if classes is None:
        classes = convs[-1][1].out_channels
    for name, module in reversed(convs):
        if module.out_channels != classes and name != "head":
            return name
    return convs[-1][0]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidInputError(
            None, f"unknown method {method!r}; choose one of {', '.join(METHODS)}"
        )


def check_images(images: Any, model: nn.Module | None = None) -> torch.Tensor:
    """``images`` as a float (B, C, H, W) tensor with the model's C (1 by default), or
    :class:`InvalidInputError` saying what was expected."""
    channels = getattr(getattr(model, "config", None), "in_channels", 1)
    if not isinstance(images, torch.Tensor):
        raise InvalidInputError(None, f"images must be a torch.Tensor, got {type(images).__name__}")
    shape = tuple(images.shape)
    if images.dim() != 4 or shape[1] != channels or shape[0] == 0 or 0 in shape[2:]:
        raise InvalidInputError(
            None, f"images must have shape (B, {channels}, H, W) with B >= 1, got {shape}"
        )
    return images if images.is_floating_point() else images.float()


def check_region(region: Any, images: torch.Tensor, name: str = "region") -> torch.Tensor:
    """``region`` as a bool (B, H, W) tensor matching ``images`` (B, 1, H, W)."""
    expected = (images.shape[0], *images.shape[-2:])
    if not isinstance(region, torch.Tensor) or tuple(region.shape) != expected:
        got = tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__
        raise InvalidInputError(None, f"{name} must have shape {expected}, got {got}")
    return region.bool()


def model_logits(output: Any) -> torch.Tensor:
    """The class score maps of a model's output: ``SegmentationOutput.logits`` or the tensor."""
    return output.logits if hasattr(output, "logits") else output


def predicted_lv(logits: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: the pixels whose highest score is the LV's."""
    return logits.argmax(dim=1) == LV_CLASS


def lv_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(B, H, W) log(p_lv / (1 - p_lv)) under the softmax: S_lv - logsumexp of the other scores,
    which is S_lv - S_bg for two classes."""
    others = torch.cat([logits[:, :LV_CLASS], logits[:, LV_CLASS + 1 :]], dim=1)
    return logits[:, LV_CLASS] - others.logsumexp(dim=1)


def nonempty(region: torch.Tensor) -> torch.Tensor:
    """``region`` with every empty (H, W) slice replaced by the whole image."""
    empty = ~region.flatten(1).any(dim=1)
    return region | empty[:, None, None]


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class Explainer:
    """Base class: hooks ``layer``, runs the model, and hands activations and gradients to
    :meth:`compute`, the one function each method overrides.

    ``layer`` is a qualified module name from :func:`conv_layer_names` (None: the method's
    :func:`default_layer`). The model is put in eval mode (BatchNorm statistics fixed, no
    dropout), so images in a batch are explained independently.
    """

    name: str = "explainer"
    needs_gradients: bool = True
    """Whether :meth:`compute` needs dtarget/dactivation (else the forward pass runs no-grad)."""
    reads_input: bool = False
    """Whether the hook stores the layer's input (the CAM head's F_k) rather than its output."""

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        self.model = model.eval()
        self.layer = layer if layer is not None else default_layer(model, self.name)
        valid = conv_layer_names(model)
        if self.layer not in valid:
            raise InvalidInputError(
                None, f"unknown layer {self.layer!r}; valid layers: {', '.join(valid)}"
            )
        self.module = model.get_submodule(self.layer)

    def run(
        self, images: torch.Tensor, *, gradients: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: (the hooked activation, the logits). With ``gradients`` the
        activation stays in the autograd graph of the logits; otherwise nothing is recorded."""
        stored: list[torch.Tensor] = []

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
            if self.reads_input:
                stored[:] = [inputs[0]]
                return None
            stored[:] = [output]
            return output.clone()  # later in-place ops must not overwrite `stored`

        handle = self.module.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(gradients):
                if gradients:
                    # A leaf that requires grad keeps the graph alive even for frozen weights.
                    images = images.detach().requires_grad_(True)
                logits = model_logits(self.model(images))
        finally:
            handle.remove()
        if not stored:
            raise InvalidInputError(
                None, f"layer {self.layer!r} is not used by {type(self.model).__name__}.forward"
            )
        return stored[0], logits

    def __call__(self, images: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B, H, W), float32, at input resolution and raw scale, for images (B, 1, H, W).

        ``region`` (B, H, W) bool chooses the pixels whose LV logits form the target (None: the
        model's own LV prediction); an empty region stands for the whole image.
        """
        images = check_images(images, self.model)
        source_device = images.device
        images = images.to(_device(self.model))
        if region is not None:
            region = check_region(region, images).to(images.device)
        activations, logits = self.run(images, gradients=self.needs_gradients)
        region = nonempty(predicted_lv(logits.detach()) if region is None else region)
        gradients = None
        if self.needs_gradients:
            (gradients,) = torch.autograd.grad(self.target(logits, region).sum(), activations)
        with torch.no_grad():
            maps = self.compute(activations.detach(), gradients, logits.detach(), region)
            if maps.shape[-2:] != images.shape[-2:]:
                maps = F.interpolate(
                    maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
                )[:, 0]
        return maps.float().to(source_device)

    def target(self, logits: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """(B,) the score each image's map explains: the LV log-odds summed over its region
        (see the module docstring for why not the LV logit alone)."""
        return (lv_log_odds(logits) * region).sum(dim=(1, 2))

    def compute(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        logits: torch.Tensor,
        region: torch.Tensor,
    ) -> torch.Tensor:
        """The map (B, h, w) at the layer's resolution from its activations (B, K, h, w), the
        target's gradients with respect to them (same shape; None if not ``needs_gradients``),
        the logits (B, classes, H, W) and the target region (B, H, W) bool."""
        raise NotImplementedError


class CAM(Explainer):
    """Exact CAM of a model with a CAM head: M = sum_k (w_lv,k - w_bg,k) F_k + (b_lv - b_bg),
    which equals ``logits[:, LV_CLASS] - logits[:, BACKGROUND_CLASS]`` (see the module
    docstring)."""

    name = "cam"
    needs_gradients = False
    reads_input = True

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        if not callable(getattr(model, "cam_weights", None)) or not isinstance(
            getattr(model, "head", None), nn.Conv2d
        ):
            raise InvalidInputError(
                None,
                f"{type(model).__name__} has no global-average-pooling CAM head; "
                "use --method gradcam",
            )
        if layer not in (None, "head"):
            raise InvalidInputError(
                None, f"CAM is read at the CAM head 'head' only; use --method gradcam for {layer!r}"
            )
        super().__init__(model, "head")

    def compute(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        logits: torch.Tensor,
        region: torch.Tensor,
    ) -> torch.Tensor:
        weights, bias = self.model.cam_weights()
        lv_minus_bg = weights[LV_CLASS] - weights[BACKGROUND_CLASS]
        offset = bias[LV_CLASS] - bias[BACKGROUND_CLASS]
        return torch.einsum("k,bkhw->bhw", lv_minus_bg, activations) + offset


class GradCAM(Explainer):
    """Seg-Grad-CAM: ReLU of the activations weighted by the spatial mean of the gradients of the
    region-summed LV logit (see the module docstring)."""

    name = "gradcam"

    def compute(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        logits: torch.Tensor,
        region: torch.Tensor,
    ) -> torch.Tensor:
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        return torch.relu((weights * activations).sum(dim=1))


EXPLAINERS: dict[str, type[Explainer]] = {"cam": CAM, "gradcam": GradCAM}
METHODS: tuple[str, ...] = tuple(EXPLAINERS)


def make_explainer(method: str, model: nn.Module, layer: str | None = None) -> Explainer:
    """The explainer registered as ``method`` (one of :data:`METHODS`) for ``model``."""
    _check_method(method)
    return EXPLAINERS[method](model, layer)


def activation_gallery(
    model: nn.Module, images: torch.Tensor, layer: str, k: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` channels of ``layer`` with the highest mean activation, per image.

    Returns maps (B, k, h, w) at the layer's resolution, raw scale, strongest first, and their
    channel indices (B, k). ``k`` larger than the layer's channels gives all of them.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(None, f"k must be an integer >= 1, got {k!r}")
    explainer = Explainer(model, layer)
    images = check_images(images, model)
    activations, _ = explainer.run(images.to(_device(model)))
    mean = activations.mean(dim=(2, 3))
    channels = mean.topk(min(k, mean.shape[1]), dim=1).indices
    index = channels[:, :, None, None].expand(-1, -1, *activations.shape[-2:])
    return activations.gather(1, index).float().to(images.device), channels.to(images.device)
