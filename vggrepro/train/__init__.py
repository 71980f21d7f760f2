"""Section 3.1, training: the recipe (settings, the net and its start, the cached run), the one loop
(SGD with momentum, the plateau schedule, resume), validation during training, checkpoints and DDP."""
