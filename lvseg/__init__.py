"""lvseg: train a small, interpretable CNN to segment the left ventricle in cardiac MRI."""

__version__ = "0.1.0"
