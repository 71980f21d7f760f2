"""Sections 3.2 and 4, testing: the protocols (centre crop, dense, multi-crop, both; one or several
scales), their batched forward passes, posteriors, windows against context, fusion (4.4) and
released weights (torchvision, the authors' Caffe models, their VGG-16 convolutions from an ONNX file)."""
