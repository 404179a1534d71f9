"""Whole cine studies for prediction: each frame of a short-axis stack, its geometry, no labels.

``lvseg predict`` runs a model on what a scanner or an archive hands over, which is not a labelled
dataset: a folder of DICOM files (one or many patients, many series), a NIfTI cine, or a few image
files. :func:`read_study` turns any of these into :class:`CineStudy` objects: an array of
(slices, phases, rows, cols) images plus what is needed to write the predicted masks back over
the source (:meth:`CineStudy.to_nifti`). This package does not import torch.

Modules: :mod:`.read` (what each input gives), :mod:`.cine` (the study and its geometry),
:mod:`.dicom_folder` (DICOM folders into studies) and :mod:`.stacks` (which DICOM frames make the
short-axis cine, in what order).
"""

from lvseg.data.study.cine import KINDS, CineStudy
from lvseg.data.study.read import NOT_AN_INPUT, iter_studies, read_study

__all__ = ["KINDS", "NOT_AN_INPUT", "CineStudy", "iter_studies", "read_study"]
