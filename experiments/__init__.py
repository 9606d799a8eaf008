"""The science: datasets, augmentations, models, training, embedding and cloud metrics.

A pure library: it imports torch, torchvision, lightly, numpy, scipy and giotto-ph, never ray or mlflow, so every
function is usable from a notebook without a cluster.
"""
