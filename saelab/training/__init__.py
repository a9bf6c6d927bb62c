"""Training loops and estimators: common (shared parts), autoencoder (the notes), modern (ReLU + L1, TopK), loading."""
