"""Evaluation: segmentation metrics (:mod:`lvseg.evaluate.metrics`)."""
