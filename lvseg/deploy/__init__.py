"""Deployment: export a trained model to ONNX / int8 / ORT with its model card
(:mod:`lvseg.deploy.export`, :mod:`lvseg.deploy.card`), and segment whole studies with ONNX
Runtime (:mod:`lvseg.deploy.predict`; the files of each study in :mod:`lvseg.deploy.outputs`,
its typed results in :mod:`lvseg.deploy.results`). Everything but the export runs without
PyTorch."""
