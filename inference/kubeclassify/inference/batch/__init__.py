"""The batch worker: classifies a ClassificationBatch's images into a results file.

Run as `python -m kubeclassify.inference.batch` (the batch Job's entrypoint) or
`kubeclassify batch run`."""
