"""`kubeclassify operator`: run the operator, or print the RBAC rules it needs."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify operator run|rbac`."""
    p = subparsers.add_parser("operator", help="the Kubernetes operator", description=__doc__)
    sub = p.add_subparsers(dest="operator_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="reconcile ModelDeployments and ClassificationBatches",
        description="Run the operator (one active replica: Kopf's standalone mode, no peering)."
        " Settings come from KUBECLASSIFY_OPERATOR__* variables; --namespace overrides"
        " KUBECLASSIFY_OPERATOR__NAMESPACES.",
    )
    run.add_argument(
        "--namespace", "-n", action="append", default=[], help="a namespace to watch (repeat for several)"
    )
    run.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    run.set_defaults(func=_run)
    tick = sub.add_parser(
        "tick",
        help="mark a scheduled ClassificationBatch as due (what its CronJob runs)",
        description="Stamp the ClassificationBatch with the tick annotation; the operator then starts"
        " the run for the next due date. Needs only `patch` on that one object.",
    )
    tick.add_argument("name", help="the ClassificationBatch")
    tick.add_argument(
        "--namespace", "-n", default=os.environ.get("NAMESPACE"), help="its namespace (default: $NAMESPACE)"
    )
    tick.set_defaults(func=_tick)
    rbac = sub.add_parser(
        "rbac",
        help="print the RBAC rules the operator needs, as YAML",
        description="Print the RBAC rules the operator needs, as YAML: exactly the verbs its code sends,"
        " for a Role in each watched namespace or the ClusterRole for watching every namespace.",
    )
    rbac.add_argument(
        "--scope",
        choices=("namespaced", "cluster"),
        default="namespaced",
        help="namespaced: a Role for each watched namespace; cluster: the ClusterRole for watching"
        " every namespace (default: %(default)s)",
    )
    rbac.set_defaults(func=_rbac)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from kubeclassify.core.logs import configure_logging
    from kubeclassify.operator import main  # noqa: F401  (registers the handlers)
    from kubeclassify.operator.config import OperatorSettings

    settings = OperatorSettings()
    configure_logging(settings.log_level, settings.log_format)
    config = settings.operator.model_copy(
        update={"namespaces": [] if args.all_namespaces else args.namespace or settings.operator.namespaces}
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_without_kopf_settings)
    if args.all_namespaces and args.namespace:
        print("give --namespace or --all-namespaces, not both", file=sys.stderr)
        return 2
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz",
        memo=kopf.Memo(config=config),
    )
    return 0


def _tick(args: argparse.Namespace) -> int:
    import datetime as dt

    from kubeclassify.core.constants import ANNOTATION_TICK
    from kubeclassify.core.kubeapi import api_client
    from kubeclassify.operator.kube import ClusterApi

    if not args.namespace:
        print("kubeclassify operator tick: no namespace: pass --namespace or set NAMESPACE", file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ClusterApi(api_client()).annotate_classification_batch(args.namespace, args.name, {ANNOTATION_TICK: now})
    print(f"ticked {args.namespace}/{args.name} at {now}")
    return 0


def _without_kopf_settings(record: logging.LogRecord) -> bool:
    """Kopf attaches its whole settings object to each object's log records: keep lines short."""
    record.__dict__.pop("settings", None)
    return True


def _rbac(args: argparse.Namespace) -> int:
    import yaml

    from kubeclassify.operator.rbac import rules

    print(yaml.safe_dump(rules(cluster_wide=args.scope == "cluster"), sort_keys=False), end="")
    return 0
