"""Deployment: export a trained model to ONNX / int8 / ORT with its model card
(:mod:`lvseg.deploy.export`), and segment whole studies with ONNX Runtime
(:mod:`lvseg.deploy.predict`). Everything but the export runs without PyTorch."""
