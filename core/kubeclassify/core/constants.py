"""Names that the operator, the gateway, the charts and the tests must agree on."""

GROUP = "kubeclassify.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MODEL_DEPLOYMENT = "ModelDeployment"
CLASSIFICATION_BATCH = "ClassificationBatch"
PLURALS = {MODEL_DEPLOYMENT: "modeldeployments", CLASSIFICATION_BATCH: "classificationbatches"}
SHORT_NAMES = {MODEL_DEPLOYMENT: ["md"], CLASSIFICATION_BATCH: ["cb"]}
CATEGORY = "kubeclassify"

# Labels on every child object; `kubeclassify.io/<kind>` names the owning resource.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MODEL_DEPLOYMENT = f"{GROUP}/modeldeployment"
LABEL_CLASSIFICATION_BATCH = f"{GROUP}/classificationbatch"
LABEL_OWNER = f"{GROUP}/owner"
# A Secret a ClassificationBatch's webhook may sign with carries this label, set to "true".
LABEL_WEBHOOK_SECRET = f"{GROUP}/webhook-secret"

# Kopf keeps its progress and diff-base in annotations under this prefix, so our status
# schema stays strict (a structural schema would otherwise prune Kopf's status fields). It is a
# subdomain of its own: Kopf ignores every annotation under its prefix when it compares objects,
# and ours (the tick, a rerun) must be seen.
KOPF_PREFIX = f"kopf.{GROUP}"
FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_TICK = f"{GROUP}/tick"
ANNOTATION_RERUN_DATE = f"{GROUP}/rerun-date"
# A gateway user's batch (one that carries LABEL_OWNER) runs only what the gateway admitted: the
# gateway writes this annotation (kubeclassify.core.resources.classification_batch.Admission) once
# it has reserved the credits of the run the batch's status.pendingRun names.
ANNOTATION_ADMISSION = f"{GROUP}/admission"
# The gateway's batches carry LABEL_MANAGED_BY set to this.
MANAGED_BY_GATEWAY = "kubeclassify-gateway"

# What the operator hands its pods, in their environment: the ModelDeployment (predictors and batch
# workers), the ClassificationBatch and the predictor's URL (batch workers), as JSON or text.
ENV_MODEL_DEPLOYMENT = "KUBECLASSIFY_MODEL_DEPLOYMENT"
ENV_BATCH = "KUBECLASSIFY_BATCH"
ENV_PREDICTOR_URL = "KUBECLASSIFY_PREDICTOR_URL"

# The batch worker's exit codes, which the operator's Jobs act on (podFailurePolicy): the predictor
# could not be reached (the Job retries), unusable input, too many unreadable images (both final).
EXIT_PREDICTOR_UNAVAILABLE = 1
EXIT_UNUSABLE_INPUT = 2
EXIT_TOO_MANY_FAILED = 3
EXIT_FINAL = (EXIT_UNUSABLE_INPUT, EXIT_TOO_MANY_FAILED)

# A CSV cell starting with one of these is one a spreadsheet would run as a formula (OWASP's list):
# the gateway refuses an uploaded CSV that has one, the batch worker escapes one in its results.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# File extensions taken as images when listing a prefix or a folder (compared lower-cased).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# The predictor's V1 protocol as its clients speak it (core.predictor): the raw image is the body,
# and this header asks for the top k labels (the model's default when absent).
HEADER_TOP_K = "KubeClassify-Top-K"
