"""``python -m lvseg`` runs the command line."""

from lvseg.cli import app

app(prog_name="lvseg")
