"""The laboratory: everything the lesson's files and the experiment scripts use.

The lesson itself is at the repository's root, in reading order reference.py,
exercise.py, sparse_autoencoder.py, gradcheck.py, fast.py, then
stacked_autoencoder.py and modern_sae.py; the experiment scripts are there
too. This package holds the machinery around them, one folder per topic, in
the order ``ls`` lists them:

    checks/       argument checks before any work starts
        argtypes.py     argparse types for the scripts' options
        memory.py       refuse sizes that would not fit in memory, before allocating
        validation.py   arrays, parameters and settings of every model (named errors)
    data/         the data sets
        dead_leaves.py  synthetic images with natural-image statistics (the offline default)
        mnist.py        MNIST: IDX reader, checksums, download
        olshausen.py    the notes' own images (IMAGES.mat): download, checks
        patches.py      image patches: sampling, whitening, the exercise's normalization
    diagnostics.py  what a trained model does on data (FVE, rho_hat, L0, dead units)
    experiment.py   the experiment scripts' shared runner: options, outputs, exit statuses
    figures/      what is drawn
        animation.py    filters recorded during training, drawn as a GIF
        density.py      feature density: the histogram of log10 of each latent's firing frequency
        plots.py        filters, reconstructions, training curves, rho_hat histograms, accuracy
    files/        what is written to disk
        atomic.py       atomic writes: a file is complete or absent
        model_file.py   the .npz model format and its checks
        stacked_file.py the stacked network's .npz format (save_stacked, load_stacked) and its checks
    localization.py how localized a filter is: the spread of its energy over the tile
    softmax.py      softmax regression (UFLDL): self-taught learning, the stacked network's top
    training/     training loops and estimators
        autoencoder.py  the notes' model: L-BFGS and Adam, the SparseAutoencoder estimator
        common.py       what both estimators share: progress lines with ETA, Ctrl-C, Adam's update
        loading.py      a saved model of any kind as its own estimator
        modern.py       ReLU + L1 and TopK: Adam, their recipes, dead latents, AuxK, ModernAutoencoder

Imports flow one way and never take another module's private names
(tests/test_layout.py). docs/model.md is the full map.
"""
