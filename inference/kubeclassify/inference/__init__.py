"""Inference: the KServe predictor, image preprocessing, the batch worker and model training."""
