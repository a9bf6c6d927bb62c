"""The data sets: MNIST (mnist), natural-image patches (patches) from dead-leaves images (dead_leaves) or the notes' own (olshausen)."""
