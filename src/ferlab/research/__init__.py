"""The research kit: how ferlab's models are made and judged (``pip install "ferlab[train]"``).

``training`` (the loop, losses, augmentation, teachers), ``evaluation`` (metrics, calibration,
uncertainty), ``explain`` (Grad-CAM), ``experiments`` (the thesis's section 5 as a runnable
suite), ``data`` (FER2013 and FER+ votes), ``nets`` (the PyTorch architectures and checkpoint
files), ``config`` (the typed run configuration) and ``device``. Everything here may import
PyTorch; the product around it (``ferlab.inference``, ``serving``, ``batch``, ``models``) runs
the shipped ONNX models without it and imports from here only where a user hands it a PyTorch
checkpoint.
"""
