"""A saved model of any kind, as its own estimator.

``autoencoder.SparseAutoencoder.load`` and ``modern.ModernAutoencoder.load``
each load their own model's files and refuse the other's by name;
``load_autoencoder`` reads the file's "model" hyperparameter and picks.
"""

from __future__ import annotations

from saelab.files.model_file import NOTES_MODEL, load_model, model_name
from saelab.training.autoencoder import SparseAutoencoder
from saelab.training.modern import MODELS, ModernAutoencoder


def load_autoencoder(path):
    """Any saved model as its estimator, which encodes with the model's own encoder.

    A file whose hyperparameters say model "relu_l1" or "topk" gives a
    ``ModernAutoencoder``; the notes' sigmoid model (files without "model")
    a ``SparseAutoencoder``; another model name, a ValueError naming it.
    """
    _, hyperparameters, _, _ = load_model(path)
    name = model_name(hyperparameters)
    if name == NOTES_MODEL:
        return SparseAutoencoder.load(path)
    if name not in MODELS:
        raise ValueError(f"model file {path}: hyperparameters name the model {name!r}, expected "
                         f"one of {', '.join(map(repr, (NOTES_MODEL, *MODELS)))}")
    return ModernAutoencoder.load(path)
