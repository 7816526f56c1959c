"""Optuna hyperparameter search over the same ``train`` function ``make train`` runs.

This folder also holds the study storage and the best-parameter files (gitignored).
"""
