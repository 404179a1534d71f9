"""lvseg's benchmarks: each module prints a table for the README.

Run them as modules from the project root, ``python -m benchmarks.NAME``: Python then imports the
lvseg of this checkout (the current folder comes first on the path), whichever lvseg is installed,
so a benchmark measures the code beside it. ``make bench`` runs them all.
"""
