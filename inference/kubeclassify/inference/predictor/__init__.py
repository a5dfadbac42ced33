"""The online predictor: a KServe ModelServer serving one TensorFlow image classifier.

Run it with `python -m kubeclassify.inference.predictor` (or `kubeclassify serve`)."""
