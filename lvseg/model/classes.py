"""The output channels every lvseg network keeps: the one place that says which is the LV.

Torch-free (the lean inference install reads it too). Every registered model returns score maps
(B, len(CLASS_NAMES), H, W) in this order; the losses, explanations, segmenter and exported
models read the LV channel from here.
"""

BACKGROUND_CLASS = 0
LV_CLASS = 1
"""Channel of the LV blood pool (the filled endocardial contour) in every model's score maps."""
CLASS_NAMES = ("background", "lv")
