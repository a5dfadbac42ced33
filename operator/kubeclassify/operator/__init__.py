"""The Kopf operator: reconciles ModelDeployments into KServe InferenceServices and
ClassificationBatches into Jobs and CronJobs."""
