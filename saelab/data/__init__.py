"""The data sets: MNIST (mnist) and natural-image patches (patches)."""
