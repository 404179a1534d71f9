"""Data management: readers for every format, one slice record, splits, preprocessing, augmentation.

This package imports nothing else of lvseg; everything downstream consumes its
:class:`~lvseg.data.records.SliceRecord` and :class:`~lvseg.data.records.Dataset`.
"""
