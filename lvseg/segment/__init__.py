"""The one inference path: every command that runs a model on images goes through here.

- :mod:`lvseg.segment.segmenter`: :class:`Segmenter`: prepare, place the crop, segment, map back;
- :mod:`lvseg.segment.locate`: where the crop goes (the heart located in a stack, or the centre);
- :mod:`lvseg.segment.network`: the :class:`Network` protocol and the PyTorch network;
- :mod:`lvseg.segment.onnx`: an exported model on ONNX Runtime (no torch).

Nothing is imported here, so ``import lvseg.segment.onnx`` stays light for the lean install.
"""
