"""Commands for people at a terminal: the local stack (`up`, `down`, `status`, `demo`) and the
gateway's API (`classify`, `models`, `images`, `credits`, `batch submit|status|results`).

The gateway commands talk to --gateway (default: $KUBECLASSIFY_GATEWAY_URL, else the local stack's)
as --api-key, or --username and --password (default: the local stack's admin). `--output json`
prints JSON for scripts. Exit codes: 0 done, 1 a batch ended Failed, 2 refused (bad input, not
found, no credits), 4 the gateway is unreachable or failed (or, for `up` and `demo`, a service
did not start), 3 a component is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

    Parsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


# -- the local stack -------------------------------------------------------------------------------


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help="where the local stack keeps its data and logs"
        " (default: $KUBECLASSIFY_HOME, else ./.local/stack when it exists, else ~/.kubeclassify)",
    )


def _home_of(args: argparse.Namespace) -> Path:
    from kubeclassify.cli.stack import default_home

    return (args.home or default_home()).resolve()


def register_stack(subparsers: Parsers) -> None:
    """`kubeclassify up|down|status|demo`."""
    up = subparsers.add_parser(
        "up",
        help="start the local stack: S3, Redis, the predictor and the gateway",
        description="Start SeaweedFS (S3), redis-server, the predictor serving the digits model (trained"
        " and published first if none is exported yet) and the gateway as local processes, with the"
        " sample daily images uploaded; they keep running until `kubeclassify down`.",
    )
    _home(up)
    up.add_argument("--gateway-port", type=int, help="the gateway's port (default: 8000 when free)")
    up.add_argument(
        "--model",
        type=Path,
        help="serve this exported model (the folder `kubeclassify train --output` wrote) instead of the"
        " digits model; its card gives the name, input and labels",
    )
    up.set_defaults(func=_up)
    down = subparsers.add_parser(
        "down",
        help="stop the local stack",
        description="Stop every process that `kubeclassify up` started (by PID, the gateway first); the"
        " data stays in the home folder for the next `up`.",
    )
    _home(down)
    down.set_defaults(func=_down)
    status = subparsers.add_parser(
        "status",
        help="show the local stack's processes and whether each answers",
        description="Show each process of the local stack (S3, Redis, the predictor, the gateway): its PID,"
        " where it answers, and whether it does. Exits 0 when every one answers, 1 otherwise.",
    )
    _home(status)
    _output(status)
    status.set_defaults(func=_status)
    demo = subparsers.add_parser(
        "demo",
        help="the main job end to end on this machine (what `make demo` runs)",
        description="Start the local stack (training the digits model the first time), upload three days"
        " of sample images, then through the gateway classify one image and run the first day's batch,"
        " and show the results, their accuracy and the rows of the broken files; stop what it started.",
    )
    _home(demo)
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.add_argument(
        "--images-per-day", type=int, default=100, help="sample images a day (default: %(default)s)"
    )
    demo.add_argument("--gateway-port", type=int, help="the gateway's port (default: 8000 when free)")
    demo.add_argument("--epochs", type=int, help="training epochs, when the model must be trained")
    demo.set_defaults(func=_demo)


def _starting(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A stack command whose failure to start a service (or to train) is a message and exit 4."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except RuntimeError as e:  # LaunchError (with the end of the service's log), GatewayError
            print(f"kubeclassify: {e}", file=sys.stderr)
            return 4

    return run


@_starting
def _up(args: argparse.Namespace) -> int:
    from kubeclassify.cli import stack

    home = _home_of(args)
    if args.model is not None:
        try:
            stack.read_card(args.model)
        except ValueError as e:  # pydantic's ValidationError too: a card that is not one
            print(f"kubeclassify: {e}", file=sys.stderr)
            return 2
    running = stack.up(home, args.gateway_port, model_dir=args.model)
    samples = stack.prepare_samples(running)
    url = running.gateway_url
    print(f"The local stack is up (data and logs in {home}):")
    for name, service in running.services.items():
        print(f"  {name:<10} {service.url}")
    print(
        f"Web page {url}/ and API docs {url}/docs:"
        f" sign in as {stack.ADMIN}, password {running.admin_password}"
    )
    print(
        f"Sample images for {', '.join(map(str, samples.dates))} are listed in {stack.MANIFEST['uri']};"
        f" {len(samples.files)} of them are in {home / stack.SAMPLES}."
    )
    print(f"\nIn a shell, `. {_shown(samples.env_file)}` sets these (the README's examples use them):\n")
    print(samples.env_file.read_text().split("\n", 1)[1])
    script = Path(sys.executable).parent / "kubeclassify"
    cli = _shown(script) if script.exists() else "kubeclassify"
    print("and then, for example:\n")
    print(f'{cli} classify "$SAMPLE"')
    print(f'BATCH=$({cli} batch submit --date "$DAY1" --wait -o name)')
    print(f'{cli} batch results "$BATCH" --file results.csv')
    print('curl -s "$GATEWAY/v1/me" -H "Authorization: Bearer $TOKEN"')
    checkout = home == (Path(".local") / "stack").resolve()
    print(
        f"\n`kubeclassify down --home {_shown(home)}`{' (or `make down`)' if checkout else ''} stops it all."
    )
    return 0


def _shown(path: Path) -> str:
    """`path` as short as it can be written from here: relative to the current folder when inside it."""
    try:
        shown = str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
    return shown if "/" in shown else f"./{shown}"  # `. env.sh` would search $PATH


def _down(args: argparse.Namespace) -> int:
    from kubeclassify.cli import stack

    if not stack.down(_home_of(args)):
        print("nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kubeclassify.cli import stack
    from kubeclassify.cli.console import table

    found = stack.status(_home_of(args))
    if args.output == "json":
        print(json.dumps(found, indent=2))
    elif not found:
        print("the local stack is not running (`kubeclassify up` starts it)")
    else:
        table([{"service": n, **s} for n, s in found.items()], ["service", "pid", "url", "healthy"])
    return 0 if found and all(s["healthy"] for s in found.values()) else 1


@_starting
def _demo(args: argparse.Namespace) -> int:
    from kubeclassify.cli import demo

    train_args = ("--epochs", str(args.epochs)) if args.epochs else ()
    return demo.run(_home_of(args), args.keep, args.images_per_day, args.gateway_port, train_args)


# -- models ----------------------------------------------------------------------------------------


def register_model(subparsers: Parsers) -> None:
    """`kubeclassify model deployment`."""
    p = subparsers.add_parser(
        "model",
        help="work with exported models",
        description="Work with the models `kubeclassify train` exports.",
    )
    commands = p.add_subparsers(title="model commands", metavar="COMMAND")
    d = commands.add_parser(
        "deployment",
        help="print the ModelDeployment that serves an exported model",
        description="Print, as YAML, the ModelDeployment that serves an exported model: its input spec,"
        " version and description come from the model card, so nothing is copied by hand. Exit 2 when"
        " SOURCE holds no model card.",
    )
    d.add_argument("source", help="the exported model: a folder, or s3://bucket/prefix/ (KUBECLASSIFY_S3__*)")
    d.add_argument("--uri", help="where the cluster reads the model (default: SOURCE as a URI)")
    d.add_argument("--name", help="the ModelDeployment's name (default: the card's)")
    d.set_defaults(func=_model_deployment)


def _model_deployment(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from kubeclassify.core.model_card import CARD_FILE, ModelCard, model_deployment
    from kubeclassify.core.settings import Settings
    from kubeclassify.core.storage import ObjectStore, StorageError

    source = args.source if "://" in args.source else "file://" + str(Path(args.source).resolve())
    source = source.rstrip("/") + "/"
    try:
        card = ModelCard.model_validate_json(ObjectStore(Settings().s3).read(source + CARD_FILE))
    except (StorageError, OSError, ValidationError) as e:
        print(
            f"kubeclassify: no model card at {source}{CARD_FILE}: {str(e).splitlines()[0]}", file=sys.stderr
        )
        return 2
    try:
        resource = model_deployment(card, args.uri or source, args.name)
    except ValueError as e:  # a --name or --uri that a ModelDeployment cannot have
        print(f"kubeclassify: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"# From {source}{CARD_FILE} (test accuracy {card.metrics.test_accuracy:.1%})")
    print(yaml.safe_dump(resource, sort_keys=False), end="")
    return 0


class UsageError(ValueError):
    """Options that do not go together."""


# -- the gateway's API -----------------------------------------------------------------------------


def _output(p: argparse.ArgumentParser, *more: str) -> None:
    choices = ("text", "json", *more)
    p.add_argument("--output", "-o", choices=choices, default="text", help=" or ".join(choices))


def _gateway_options(p: argparse.ArgumentParser, *outputs: str) -> None:
    _output(p, *outputs)
    _home(p)
    p.add_argument("--gateway", default=os.environ.get("KUBECLASSIFY_GATEWAY_URL"), help="the gateway's URL")
    p.add_argument("--api-key", default=os.environ.get("KUBECLASSIFY_API_KEY"), help="an API key (kc_...)")
    p.add_argument("--username", default=os.environ.get("KUBECLASSIFY_USERNAME"), help="or a name...")
    p.add_argument("--password", default=os.environ.get("KUBECLASSIFY_PASSWORD"), help="...and its password")


def _client(
    name: str,
    help: str,
    subparsers: Parsers,
    func: Callable[..., Any],
    *outputs: str,
    check: Callable[[argparse.Namespace], None] | None = None,
) -> argparse.ArgumentParser:
    """A command that talks to the gateway (or the cluster); `check` refuses unusable arguments
    before anything is contacted."""
    p = subparsers.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    _gateway_options(p, *outputs)
    p.set_defaults(func=lambda args: _call(func, args, check))
    return p


def _group(subparsers: Parsers, name: str, help: str, description: str) -> Parsers:
    """A command made of commands (`keys list`): the parsers to add them to."""
    group = subparsers.add_parser(name, help=help, description=description)
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND", required=True)


def register_client(subparsers: Parsers) -> None:
    """`kubeclassify classify|models|images|categories|credits|keys|admin|token`."""
    p = _client("classify", "classify an image file or URL through the gateway", subparsers, _classify)
    p.add_argument("image", help="an image file, or an http(s) URL that the gateway fetches")
    p.add_argument("--model", help="a model (default: the gateway's default)")
    _client("models", "list the models and whether each serves", subparsers, _models)
    p = _client(
        "images", "list my classified images, newest first (or get or delete one)", subparsers, _images
    )
    p.add_argument("--category", help="only images with this label")
    p.add_argument("--limit", type=int, default=50, help="how many (default: %(default)s)")
    p.add_argument("--offset", type=int, default=0, help="after skipping this many (default: %(default)s)")
    image_commands = p.add_subparsers(title="images commands", metavar="COMMAND")
    got = _client("get", "download an image as it was sent", image_commands, _get_image)
    got.add_argument("uid", help="the image's uid, as `images` lists it")
    got.add_argument("--file", "-f", type=Path, help="write here instead of standard output")
    gone = _client("delete", "delete an image and its record", image_commands, _delete_image)
    gone.add_argument("uid", help="the image's uid")
    _client("categories", "count my classified images per label", subparsers, _categories)
    _client("credits", "show my credits", subparsers, _credits)
    key_commands = _group(subparsers, "keys", "my API keys", "List, create and revoke my API keys (kc_...).")
    _client("list", "list my API keys (never the keys themselves)", key_commands, _keys)
    made = _client("create", "create an API key; it is shown this once", key_commands, _create_key)
    made.add_argument("name", help="what the key is for")
    revoked = _client("revoke", "revoke an API key: it stops working at once", key_commands, _revoke_key)
    revoked.add_argument("id", help="the key's id, as `keys list` shows it")
    schedules = _group(
        subparsers, "schedules", "my daily schedules", "Daily batches over the gateway's manifest."
    )
    _client("list", "list my schedules", schedules, _schedules)
    made = _client("create", "make a daily schedule", schedules, _create_schedule, "name")
    made.add_argument("--cron", required=True, help="when runs start, e.g. '30 1 * * *'")
    made.add_argument("--time-zone", default="UTC", help="of the cron and the dates (default: %(default)s)")
    made.add_argument("--start-date", help="the first date to process (default: yesterday)")
    made.add_argument("--catch-up", action="store_true", help="process missed days one by one")
    made.add_argument("--model", help="a model (default: the gateway's default)")
    edited = _client(
        "edit", "change a schedule's cron, time zone, catch-up, model or webhook", schedules, _edit_schedule
    )
    edited.add_argument("name", help="the schedule")
    edited.add_argument("--cron", help="when runs start, e.g. '30 1 * * *'")
    edited.add_argument("--time-zone", help="of the cron and the dates")
    edited.add_argument(
        "--catch-up", action=argparse.BooleanOptionalAction, help="process missed days one by one"
    )
    edited.add_argument("--model", help="a model")
    edited.add_argument("--webhook-url", help="told when each run ends ('' for none)")
    for verb, help, func in [
        ("show", "show a schedule: its next and last date, paused or not", _show_schedule),
        ("delete", "delete a schedule (a run that is going ends as it would)", _delete_schedule),
        ("pause", "pause a schedule", _pause_schedule),
        ("resume", "resume a paused schedule", _resume_schedule),
    ]:
        _client(verb, help, schedules, func).add_argument("name", help="the schedule")
    ran = _client("run", "run one date of a schedule now", schedules, _run_schedule, "name")
    ran.add_argument("name", help="the schedule")
    ran.add_argument("--date", required=True, help="the date (YYYY-MM-DD)")
    fired = _client("fire", "fire a schedule now, as its cron would", schedules, _fire_schedule, "name")
    fired.add_argument("name", help="the schedule")
    got = _client("results", "write every finished run's results as one CSV", schedules, _schedule_results)
    got.add_argument("name", help="the schedule")
    got.add_argument("--file", "-f", type=Path, help="write here instead of standard output")
    admin_commands = _group(subparsers, "admin", "an admin's commands", "Every balance, and refills.")
    _client("credits", "every account's credits", admin_commands, _balances)
    refill = _client("refill", "add credits to an account", admin_commands, _refill)
    refill.add_argument("account", help="the account's name")
    refill.add_argument("--amount", type=int, help="credits to add (default: the gateway's refill amount)")
    _client(
        "token",
        "print an access token (for curl's Authorization: Bearer); the local stack's admin by default",
        subparsers,
        _token,
    )


def register_batch(subparsers: Parsers) -> None:
    """`kubeclassify batch`: `submit`, `status` and `results` here; `run` from the inference component."""
    p = subparsers.add_parser(
        "batch",
        help="classify many images: here, or through the gateway",
        description="Classify many images: run a ClassificationBatch's shard here (run), or start one"
        " through the gateway or as a resource with --kubeconfig (submit) and follow it (status, results).",
    )
    commands = p.add_subparsers(title="batch commands", metavar="COMMAND")
    for ep in sorted(entry_points(group="kubeclassify.batch_commands"), key=lambda e: e.name):
        ep.load()(commands)
    sub = _client(
        "submit",
        "start a batch through the gateway, or as a resource",
        commands,
        _submit,
        "name",
        check=_submit_usage,
    )
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="a CSV with a url or a path column")
    source.add_argument("--date", help="a date (YYYY-MM-DD) of the gateway's daily manifest")
    source.add_argument(
        "--resource", type=Path, help="with --kubeconfig: a ClassificationBatch (YAML or JSON) to create"
    )
    sub.add_argument("--model", help="a model (default: the gateway's default)")
    sub.add_argument(
        "--max-failed-fraction",
        type=float,
        help="the share of images that may fail before the batch fails (default: the gateway's)",
    )
    sub.add_argument("--wait", action="store_true", help="show progress until it ends; exit 1 if it failed")
    st = _client("status", "show a batch's state and counts", commands, _batch_status)
    st.add_argument("name", help="the batch (as `submit` printed it)")
    st.add_argument("--wait", action="store_true", help="show progress until it ends; exit 1 if it failed")
    res = _client(
        "results", "write a finished batch's results as CSV", commands, _results, check=_results_usage
    )
    res.add_argument("name", help="the batch")
    res.add_argument("--file", "-f", type=Path, help="write here instead of standard output")
    res.add_argument("--label", help="only the rows with this top label")
    res.add_argument(
        "--date", help="with --kubeconfig: that date's results of a daily batch (default: the last run's)"
    )
    listed = _client("list", "list my batches, newest first", commands, _batch_list)
    listed.add_argument("--limit", type=int, default=50, help="how many (default: %(default)s)")
    listed.add_argument(
        "--offset", type=int, default=0, help="after skipping this many (default: %(default)s)"
    )
    cancel = _client(
        "cancel", "stop a batch; what it did not classify is given back", commands, _batch_cancel
    )
    cancel.add_argument("name", help="the batch")
    deleted = _client("delete", "delete an ended batch, its CSV and its results", commands, _batch_delete)
    deleted.add_argument("name", help="the batch")
    for p in (sub, st, res):
        p.add_argument(
            "--kubeconfig",
            nargs="?",
            const="",
            help="act on ClassificationBatch resources with this kubeconfig instead of the gateway"
            " (alone: $KUBECONFIG, else ~/.kube/config; results are read from S3 with the"
            " KUBECLASSIFY_S3__* settings)",
        )
        p.add_argument(
            "--namespace", "-n", default="default", help="with --kubeconfig (default: %(default)s)"
        )


def _connect(args: argparse.Namespace) -> Any:
    from kubeclassify.cli import stack
    from kubeclassify.cli.client import Gateway

    if getattr(args, "kubeconfig", None) is not None:
        from kubeclassify.cli.cluster import Batches

        return Batches(args.kubeconfig, args.namespace)

    local = stack.Stack.load(_home_of(args))
    url = args.gateway or (local.gateway_url if local and local.services else "http://127.0.0.1:8000")
    username, password = args.username, args.password
    if not args.api_key and not username and local is not None and not args.gateway:
        username, password = stack.ADMIN, local.admin_password  # the local stack's admin
    return Gateway(url, api_key=args.api_key, username=username, password=password)


def _call(
    func: Callable[..., Any], args: argparse.Namespace, check: Callable[[argparse.Namespace], None] | None
) -> int:
    from kubeclassify.cli.client import GatewayError
    from kubeclassify.cli.cluster import ClusterError

    try:
        if check is not None:
            check(args)
        with _connect(args) as gateway:
            result = func(gateway, args)
    except (GatewayError, ClusterError) as e:
        print(f"kubeclassify: {e}", file=sys.stderr)
        return 4 if e.status == 0 or e.status >= 500 else 2
    except (OSError, UsageError) as e:
        print(f"kubeclassify: {e}", file=sys.stderr)
        return 2
    code, data, show = result
    if args.output == "name":
        print(data["name"] or "")
    elif args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        show(data)
    return int(code)


def _classify(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    def show(p: dict[str, Any]) -> None:
        print(f"{p['label']}  {p['score']:.3f}  ({p['model_name']} {p['model_version']}, uid {p['uid']})")
        for t in p["top_k"]:
            print(f"  {t['label']:<12} {'#' * round(t['score'] * 40):<40} {t['score']:.3f}")

    return 0, gateway.classify(args.image, args.model), show


def _models(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    return 0, gateway.models(), lambda ms: table(ms, ["name", "ready", "default", "version", "description"])


def _images(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    def show(p: dict[str, Any]) -> None:  # scores rounded for people, as `classify` shows them
        rows = [{**i, "score": f"{i['score']:.3f}"} for i in p["items"]]
        table(rows, ["uid", "label", "score", "filename", "model_name"])

    return 0, gateway.images(args.category, args.limit, args.offset), show


def _get_image(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    _download(lambda: gateway.image_content(args.uid), args.file)
    target = str(args.file) if args.file else "-"
    return 0, {"uid": args.uid, "file": target}, lambda _: None


def _delete_image(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    gateway.delete_image(args.uid)
    return 0, {"uid": args.uid, "deleted": True}, lambda d: print(f"deleted {d['uid']}")


def _categories(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    def show(counts: dict[str, int]) -> None:
        table([{"label": k, "images": n} for k, n in counts.items()], ["label", "images"])

    return 0, gateway.categories(), show


def _keys(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    return 0, gateway.keys(), lambda ks: table(ks, ["id", "name", "created"])


def _create_key(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    def show(k: dict[str, Any]) -> None:
        print(k["key"])
        print(f"(id {k['id']}; this is the only time the key is shown)", file=sys.stderr)

    return 0, gateway.create_key(args.name), show


def _revoke_key(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    gateway.revoke_key(args.id)
    return 0, {"id": args.id, "revoked": True}, lambda r: print(f"revoked {r['id']}")


def _balances(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    return 0, gateway.balances(), lambda bs: table(bs, ["username", "credits"])


def _refill(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    answer = gateway.refill(args.account, args.amount)
    return 0, answer, lambda b: print(f"{b['username']}: {b['credits']} credits")


def _credits(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return 0, gateway.credits(), lambda c: print(f"{c['username']}: {c['credits']} credits")


def _token(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    token = gateway.token
    if token is None:
        raise UsageError(
            "a token comes from signing in with --username and --password; an API key is used as it is"
        )
    return 0, {"access_token": token, "token_type": "bearer"}, lambda t: print(t["access_token"])


def _batch_line(info: dict[str, Any]) -> None:
    c = info["counts"]
    print(
        f"{info['name']}  {info['state']}  {c['classified']} classified, {c['failed']} failed of {c['total']}"
    )
    if info["state"] == "Failed" and info.get("message"):
        print(f"  {info['message']}")


def _follow(
    gateway: Any, info: dict[str, Any], args: argparse.Namespace
) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import batch_progress

    if args.wait:
        info = gateway.wait_for_batch(info["name"], on_progress=batch_progress())
    return (1 if info["state"] == "Failed" else 0), info, _batch_line


def _submit_usage(args: argparse.Namespace) -> None:
    cluster = args.kubeconfig is not None
    if cluster != bool(args.resource):
        raise UsageError("--resource goes with --kubeconfig; through the gateway, give --csv or --date")
    if cluster and (args.model or args.max_failed_fraction is not None):
        raise UsageError("with --kubeconfig the resource names its model and maxFailedFraction")


def _submit(backend: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    if args.kubeconfig is not None:
        return _follow(backend, backend.submit_batch(args.resource), args)
    batch = backend.submit_batch(args.csv, args.date, args.model, args.max_failed_fraction)
    return _follow(backend, batch, args)


def _batch_status(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return _follow(gateway, gateway.batch(args.name), args)


def _results_usage(args: argparse.Namespace) -> None:
    if args.kubeconfig is not None and args.label:
        raise UsageError("--label is the gateway's; with --kubeconfig the whole results object is read")
    if args.kubeconfig is None and args.date:
        raise UsageError("--date goes with --kubeconfig; a gateway schedule's dates: `schedules results`")


def _results(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    if args.kubeconfig is not None:
        _download(lambda: gateway.results_csv(args.name, args.date), args.file)
    else:
        _download(lambda: gateway.results_csv(args.name, args.label), args.file)
    target = str(args.file) if args.file else "-"
    return 0, {"batch": args.name, "file": target}, lambda _: None


BATCH_COLUMNS = ["name", "state", "model", "input", "classified", "failed", "total", "created"]


def _batch_list(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table, when

    def show(page: dict[str, Any]) -> None:
        rows = [{**b, **b["counts"], "created": when(b["created"])} for b in page["items"]]
        table(rows, BATCH_COLUMNS)
        shown = page["offset"] + len(page["items"])
        if shown < page["total"]:
            print(f"({shown} of {page['total']}; --offset {shown} for more)", file=sys.stderr)

    return 0, gateway.batches(args.offset, args.limit), show


def _batch_cancel(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return 0, gateway.cancel_batch(args.name), _batch_line


def _batch_delete(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    gateway.delete_batch(args.name)
    return 0, {"name": args.name, "deleted": True}, lambda d: print(f"deleted {d['name']}")


def _download(chunks: Callable[[], Iterable[bytes]], file: Path | None) -> None:
    """Write the chunks to standard output, or to `file` whole or not at all: a refused or broken
    download leaves no file behind."""
    if file is None:
        for chunk in chunks():
            sys.stdout.buffer.write(chunk)
        return
    partial = file.with_name(file.name + ".part")
    try:
        with partial.open("wb") as out:
            for chunk in chunks():
                out.write(chunk)
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)


SCHEDULE_COLUMNS = ["name", "model", "cron", "time_zone", "paused", "last_date", "next_date", "next_run"]


def _schedules(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    from kubeclassify.cli.console import table

    return 0, gateway.schedules(), lambda ss: table(ss, SCHEDULE_COLUMNS)


def _schedule_line(s: dict[str, Any]) -> None:
    state = f"paused: {s['reason']}" if s["paused"] else f"next {s['next_date']} at {s['next_run']}"
    print(f"{s['name']}  {s['cron']} {s['time_zone']}  last done {s['last_date'] or '-'}, {state}")


def _create_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    made = gateway.create_schedule(
        cron=args.cron,
        time_zone=args.time_zone,
        start_date=args.start_date,
        catch_up=args.catch_up or None,
        model=args.model,
    )
    return 0, made, _schedule_line


def _edit_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    fields = {
        "cron": args.cron,
        "time_zone": args.time_zone,
        "catch_up": args.catch_up,
        "model": args.model,
        "webhook_url": args.webhook_url,
    }
    if all(v is None for v in fields.values()):
        raise UsageError("say what to change: --cron, --time-zone, --catch-up, --model or --webhook-url")
    return 0, gateway.edit_schedule(args.name, **fields), _schedule_line


def _show_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return 0, gateway.schedule(args.name), _schedule_line


def _delete_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    gateway.delete_schedule(args.name)
    return 0, {"name": args.name, "deleted": True}, lambda d: print(f"deleted {d['name']}")


def _pause_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return 0, gateway.pause_schedule(args.name, True), _schedule_line


def _resume_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    return 0, gateway.pause_schedule(args.name, False), _schedule_line


def _run_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    ran = gateway.run_schedule(args.name, args.date)
    ran["name"] = ran["batch"]  # `--output name` prints the batch to follow with `batch status`
    return 0, ran, lambda r: print(f"{r['schedule']} {r['date']}: batch {r['batch']}")


def _fire_schedule(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    fired = gateway.fire_schedule(args.name)
    fired["name"] = fired["batch"]  # `--output name` prints the batch to follow (empty: nothing runs)

    def show(f: dict[str, Any]) -> None:
        if f["date"] is None:
            print(f"{f['schedule']}: ticked; the operator runs its next date ({f['batch']})")
        elif f["batch"] is None:
            print(f"{f['schedule']} {f['date']}: no images, done")
        else:
            print(f"{f['schedule']} {f['date']}: batch {f['batch']}")

    return 0, fired, show


def _schedule_results(gateway: Any, args: argparse.Namespace) -> tuple[int, Any, Callable[[Any], None]]:
    _download(lambda: gateway.schedule_results_csv(args.name), args.file)
    target = str(args.file) if args.file else "-"
    return 0, {"schedule": args.name, "file": target}, lambda _: None
