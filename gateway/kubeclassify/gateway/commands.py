"""`kubeclassify gateway run`: serve the REST API with uvicorn."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify gateway run`."""
    p = subparsers.add_parser("gateway", help="the REST gateway", description=__doc__)
    sub = p.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve /v1, /docs, /healthz and /readyz",
        description="Serve the gateway. Settings come from KUBECLASSIFY_GATEWAY__* variables"
        " (Redis URL, token secret, credits, limits).",
    )
    run.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    run.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    import uvicorn

    from kubeclassify.core.logs import configure_logging
    from kubeclassify.gateway import metrics
    from kubeclassify.gateway.config import GatewaySettings

    settings = GatewaySettings()  # refuses development secrets outside development, before serving
    configure_logging(settings.log_level, settings.log_format)
    if (port := settings.gateway.metrics_port) is not None:
        try:
            metrics.serve(port, args.workers)
        except OSError as e:
            print(f"kubeclassify gateway: cannot serve /metrics on port {port}: {e}", file=sys.stderr)
            return 2
    uvicorn.run(
        "kubeclassify.gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=False,  # the app believes X-Forwarded-For from TRUSTED_PROXIES only
        server_header=False,
    )
    return 0
