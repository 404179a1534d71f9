"""Why the network says "LV here": class activation maps, Grad-CAM and checks of their faithfulness.

- :mod:`lvseg.explain.cam`: the explanation methods (CAM read off LVNet's head, Seg-Grad-CAM for
  any model), all on one base class that holds the hook plumbing, plus activation galleries.
- :mod:`lvseg.explain.faithfulness`: does a map point at the LV (energy-based pointing game), does
  it name the pixels the prediction depends on (deletion / insertion against random order), and
  does it depend on the learned weights at all (cascading randomisation sanity check).
- :mod:`lvseg.explain.render`: one PNG panel per slice and the ``index.html`` that shows them.
- :mod:`lvseg.explain.run`: ``lvseg explain``: read the inputs, prepare them as the model was
  trained, explain, measure, render.

The live monitor's watch-slice CAMs come from :func:`lvseg.explain.cam.lv_log_odds`.
"""
