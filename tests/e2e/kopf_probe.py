"""A minimal Kopf operator for the harness test: it records each ClassificationBatch it is told
about, configured as KubeClassify's operator configures Kopf (progress in annotations)."""

from __future__ import annotations

import os
from typing import Any

import kopf

from kubeclassify.core import constants as c


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = c.FINALIZER
    settings.watching.server_timeout = 30


@kopf.on.create(c.GROUP, c.VERSION, c.PLURALS[c.CLASSIFICATION_BATCH])
def record_creation(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(f"{namespace}/{name}\n")
    # Kopf 1.45 posts Events only when asked explicitly (settings.posting.loggers is off).
    kopf.info(body, reason="Recorded", message=f"recorded {namespace}/{name}")
