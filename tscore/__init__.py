"""Shared domain core of ts-segmenter.

Imported by the gateway, the predictor and the trainer. The modules here that
the gateway uses (label config, series, segments, artifacts, errors, fetch)
never import torch; the torch-dependent parts live in :mod:`tscore.network`
and :mod:`tscore.inference`.
"""
