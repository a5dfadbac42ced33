"""Command line of the batch worker, shared by `python -m kubeclassify.inference.batch` (the Job's
entrypoint) and `kubeclassify batch run`.

The ClassificationBatch and its ModelDeployment come from files (whole resources or their specs,
YAML or JSON) or from KUBECLASSIFY_BATCH / KUBECLASSIFY_MODEL_DEPLOYMENT (JSON), as the operator
sets them. The shard is JOB_COMPLETION_INDEX (an Indexed Job's) unless --shard is given.
Exit codes: 0 done, 2 unusable input, 3 too many unreadable images (results still published).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from kubeclassify.core import constants as c

TERMINATION_LOG = Path("/dev/termination-log")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", help=f"a ClassificationBatch as YAML or JSON (default: ${c.ENV_BATCH})")
    p.add_argument(
        "--model-deployment",
        help=f"its ModelDeployment as YAML or JSON (default: ${c.ENV_MODEL_DEPLOYMENT});"
        " mode remote needs none",
    )
    p.add_argument("--model-name", help="the model's name (default: the ModelDeployment's name)")
    p.add_argument("--date", help="the date to process, YYYY-MM-DD (default: the batch's spec.date)")
    p.add_argument("--shard", type=int, help="this shard's index (default: $JOB_COMPLETION_INDEX, else 0)")
    p.add_argument("--shards", type=int, help="the number of shards (default: the batch's spec.parallelism)")
    p.add_argument("--run-time", help="the run's time, ISO 8601, written in every row (default: now)")
    p.add_argument(
        "--rerun",
        metavar="ID",
        help="classify again and replace the published results; ID names this run (letters, digits, -)",
    )
    p.add_argument(
        "--max-images",
        type=int,
        metavar="N",
        help="classify at most the input's first N images (what the run was admitted and paid for);"
        " the rest are counted as unadmitted",
    )
    p.add_argument("--workers", type=int, default=16, help="concurrent fetches and decodes (%(default)s)")
    p.add_argument(
        "--model-streams",
        type=int,
        default=0,
        help="concurrent model calls (default: one per CPU up to 4, sharing the CPUs; one on a GPU)",
    )
    p.add_argument(
        "--predictor-url",
        default=os.environ.get(c.ENV_PREDICTOR_URL),
        help="mode remote: the ModelDeployment's predictor (default: $KUBECLASSIFY_PREDICTOR_URL)",
    )
    p.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="also fetch URLs in this network (e.g. 127.0.0.0/8 for a local server)",
    )
    p.add_argument(
        "--owner-prefix",
        metavar="URI",
        help="a gateway batch: its rows may name only http(s) URLs and paths under this prefix"
        " (the owner's images)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines on stderr (%(default)s; the operator reads the last one)",
    )
    p.add_argument(
        "--termination-log",
        type=Path,
        help=f"where the summary goes (default: {TERMINATION_LOG} when it exists)",
    )


def _resource(path: str | None, env: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:  # exit 2 with the reason, as for any unusable input
            raise ValueError(f"cannot read the {what} in {path}: {e}") from e
    elif os.environ.get(env):
        raw = json.loads(os.environ[env])
    else:
        raise ValueError(f"no {what}: pass a file or set {env}")
    if isinstance(raw, dict) and "spec" in raw:
        return raw["spec"], raw.get("metadata") or {}
    return raw, {}


def run_from_args(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kubeclassify.core.logs import configure_logging
    from kubeclassify.core.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, "text" if sys.stderr.isatty() else settings.log_format)
    from pydantic import ValidationError

    from kubeclassify.core.fetch import FetchPolicy
    from kubeclassify.core.policy import ENV_POLICY, Policy, owner_of
    from kubeclassify.core.predictor import PredictorUnavailable
    from kubeclassify.core.resources import ClassificationBatchSpec, ModelDeploymentSpec
    from kubeclassify.core.resources.common import has_placeholder
    from kubeclassify.core.sources import InputError
    from kubeclassify.core.storage import ObjectStore, StorageError
    from kubeclassify.inference.artifacts import ModelError
    from kubeclassify.inference.batch.worker import BatchJob, run

    try:
        raw_batch, batch_meta = _resource(args.batch, c.ENV_BATCH, "ClassificationBatch")
        spec = ClassificationBatchSpec.model_validate(raw_batch)
        model, model_name = None, None
        if spec.mode != "remote" or args.model_deployment or os.environ.get(c.ENV_MODEL_DEPLOYMENT):
            raw_model, model_meta = _resource(
                args.model_deployment, c.ENV_MODEL_DEPLOYMENT, "ModelDeployment"
            )
            model, model_name = ModelDeploymentSpec.model_validate(raw_model), model_meta.get("name")
        policy = Policy.model_validate_json(os.environ[ENV_POLICY]) if os.environ.get(ENV_POLICY) else None
        date = dt.date.fromisoformat(args.date) if args.date else spec.date
        if date is None and (
            has_placeholder(spec.output.uri, "date")
            or spec.input.manifest is not None
            and spec.schedule is not None
        ):
            raise InputError("this batch processes one date at a time: pass --date YYYY-MM-DD")
        if args.rerun is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", args.rerun):
            raise InputError(f"--rerun {args.rerun!r}: use letters, digits and dashes")
        if (
            args.model_streams < 0
            or args.workers < 1
            or not args.progress_every >= 0
            or (args.max_images is not None and args.max_images < 0)
        ):
            raise InputError(
                "--model-streams must be 0 (automatic) or more, --workers 1 or more,"
                " --progress-every and --max-images 0 or more"
            )
        shards = args.shards or spec.parallelism
        shard = args.shard if args.shard is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
        if not 0 <= shard < shards:
            raise InputError(f"shard {shard} is outside 0..{shards - 1}")
        job = BatchJob(
            name=batch_meta.get("name") or "batch",
            spec=spec,
            model_name=args.model_name or model_name or spec.model_ref.name,
            model=model,
            date=date,
            shard=shard,
            shards=shards,
            workers=args.workers,
            model_streams=args.model_streams,
            fetch_policy=FetchPolicy.allowing(*args.allow_network),
            predictor_url=args.predictor_url,
            rerun=args.rerun,
            owner_prefix=args.owner_prefix,
            owner=owner_of(batch_meta.get("labels")),
            policy=policy,
            progress_every=args.progress_every,
            max_images=args.max_images,
        )
        if args.run_time:
            job.run_time = dt.datetime.fromisoformat(args.run_time)
        summary = run(job, ObjectStore(settings.s3))
    except (ValueError, ValidationError, InputError, StorageError, ModelError) as e:
        print(f"kubeclassify batch: error: {e}", file=sys.stderr)
        _terminate(args, json.dumps({"error": str(e)}))
        return c.EXIT_UNUSABLE_INPUT
    except PredictorUnavailable as e:  # retried by the Job: the predictor may come back
        print(f"kubeclassify batch: error: {e}", file=sys.stderr)
        _terminate(args, json.dumps({"error": str(e)}))
        return c.EXIT_PREDICTOR_UNAVAILABLE
    text = summary.to_json()
    print(text)
    _terminate(args, text)
    return c.EXIT_TOO_MANY_FAILED if summary.failed_fraction_exceeded else 0


def _terminate(args: argparse.Namespace, message: str) -> None:
    path = args.termination_log or (
        TERMINATION_LOG
        if TERMINATION_LOG.parent.exists() and os.access(TERMINATION_LOG.parent, os.W_OK)
        else None
    )
    if path is not None:
        path.write_text(message[:4096])  # Kubernetes keeps at most 4 KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubeclassify.inference.batch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
