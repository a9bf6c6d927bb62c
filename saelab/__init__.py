"""The laboratory: everything the lesson's files and the experiment scripts use.

The lesson itself is at the repository's root (reference.py,
sparse_autoencoder.py, exercise.py, gradcheck.py, fast.py, modern_sae.py);
this package holds the machinery around it, one folder per topic:

    checks/       argument checks before any work starts
        validation.py   arrays, parameters and settings of every model (named errors)
        memory.py       refuse sizes that would not fit in memory, before allocating
        argtypes.py     argparse types for the scripts' options
    data/         the data sets
        mnist.py        MNIST: IDX reader, checksums, download
        patches.py      image patches: sampling, whitening, the exercise's normalization
        dead_leaves.py  synthetic images with natural-image statistics (the offline default)
        olshausen.py    the notes' own images (IMAGES.mat): download, checks
    training/     training loops and estimators
        common.py       what both share: progress lines with ETA, Ctrl-C, Adam's update
        autoencoder.py  the notes' model: L-BFGS and Adam, the SparseAutoencoder estimator
        modern.py       ReLU + L1 and TopK: Adam, their recipes, dead latents, AuxK, ModernAutoencoder
        loading.py      a saved model of any kind as its own estimator
    files/        what is written to disk
        atomic.py       atomic writes: a file is complete or absent
        model_file.py   the .npz model format and its checks
    figures/      what is drawn
        plots.py        filters, reconstructions, training curves, rho_hat histograms
        animation.py    filters recorded during training, drawn as a GIF
        density.py      feature density: the histogram of log10 of each latent's firing frequency
    diagnostics.py  what a trained model does on data (FVE, rho_hat, L0, dead units)
    localization.py how localized a filter is: the spread of its energy over the tile
    softmax.py      softmax regression (UFLDL), for self-taught learning
    experiment.py   the experiment scripts' shared runner: options, outputs, exit statuses

Imports flow one way and never take another module's private names
(tests/test_layout.py). docs/model.md is the full map.
"""
