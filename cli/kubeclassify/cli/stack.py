"""The whole platform on one machine: SeaweedFS (S3), redis-server, the predictor serving the digits
model, and the gateway (local batch backend), as processes that outlive the command that started them.

`kubeclassify up` starts them and writes where they answer to `<home>/stack.json` (mode 0600: it
holds the generated passwords); `kubeclassify status` reads it back, `kubeclassify down` stops each
process by its PID. Data (S3, Redis, the trained model) stays in `<home>` between runs, so a second
`up` starts in seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kubeclassify.cli.processes import LocalProcess, free_port, http_status, port_open
from kubeclassify.cli.services import start_gateway, start_predictor, start_redis, start_seaweedfs
from kubeclassify.core.model_card import CARD_FILE, ModelCard, model_deployment
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore

MODEL = "digits"  # the model the stack trains and serves unless `up --model DIR` names another
SAMPLES = "samples"  # <home>/samples: a few of the daily images as files, for trying the CLI and curl
ENV_FILE = "env.sh"  # <home>/env.sh: the shell variables `up` prints
BUCKETS = ("models", "kubeclassify", "incoming")
MANIFEST = {"uri": "s3://incoming/metadata.csv", "root": "s3://incoming/"}
ADMIN = "admin"


def default_home() -> Path:
    """Where the local stack keeps its data: $KUBECLASSIFY_HOME, else `.local/stack` in the current
    folder when it exists (where `make up` puts it, in a checkout), else ~/.kubeclassify."""
    if os.environ.get("KUBECLASSIFY_HOME"):
        return Path(os.environ["KUBECLASSIFY_HOME"])
    checkout = Path(".local") / "stack"
    return checkout if checkout.is_dir() else Path.home() / ".kubeclassify"


@dataclass
class Service:
    """One running process of the stack."""

    pid: int
    url: str
    log: str


@dataclass
class Stack:
    """What `up` started, and the credentials to use it (kept in `<home>/stack.json`)."""

    home: str
    s3: dict[str, str]
    redis_url: str
    token_secret: str
    admin_password: str
    services: dict[str, Service] = field(default_factory=dict)
    model: str = MODEL  # the model it serves, by name
    model_dir: str = ""  # the exported model `up --model` named; empty: the digits model it trains

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    def s3_settings(self) -> S3Settings:
        return S3Settings.model_validate(self.s3)

    def save(self) -> None:
        path = Path(self.home) / "stack.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack | None:
        """The stack recorded in `home`, or None when there is none."""
        path = home / "stack.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["services"] = {name: Service(**s) for name, s in raw.get("services", {}).items()}
        return cls(**raw)


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def healthy(name: str, service: Service) -> bool:
    """Whether the service answers where it should."""
    if not alive(service.pid):
        return False
    if name == "gateway":
        with contextlib.suppress(OSError):
            return http_status(f"{service.url}/healthz") == 200
        return False
    where = urlsplit(service.url)
    return port_open(where.hostname or "127.0.0.1", where.port or 80)


def model_uri(name: str) -> str:
    """Where the stack's S3 keeps a served model."""
    return f"s3://models/{name}/"


def up(
    home: Path,
    gateway_port: int | None = None,
    say: Callable[[str], None] = print,
    train_args: tuple[str, ...] = (),
    model_dir: Path | None = None,
) -> Stack:
    """Start whatever of the stack is not running yet; returns it once every part answers. With
    `model_dir`, an exported model (`kubeclassify train`'s folder) is served instead of the digits."""
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    stack = Stack.load(home)
    wanted = str(model_dir.resolve()) if model_dir is not None else None
    running = stack is not None and stack.services and all(healthy(n, s) for n, s in stack.services.items())
    if stack is not None and running and (wanted is None or wanted == stack.model_dir):
        return stack
    if stack is not None:
        down(home, say=lambda _: None)
    stack = stack or Stack(
        home=str(home),
        s3={"access_key_id": "kc" + secrets.token_hex(8), "secret_access_key": secrets.token_urlsafe(24)},
        redis_url="",
        token_secret=secrets.token_urlsafe(48),
        admin_password=secrets.token_urlsafe(12),
    )
    if wanted is not None:
        stack.model_dir = wanted
        stack.model = read_card(Path(wanted)).name
    stack.services = {}
    started: list[LocalProcess] = []
    try:
        say("starting S3 (SeaweedFS) and Redis")
        s3 = start_seaweedfs(home / "s3", logs, stack.s3["access_key_id"], stack.s3["secret_access_key"])
        started.append(s3.process)
        stack.s3 = {**stack.s3, "endpoint_url": s3.endpoint_url}
        password = urlsplit(stack.redis_url).password if stack.redis_url else None
        redis = start_redis(home / "redis", logs, password=password, persist=True)
        started.append(redis.process)
        stack.redis_url = redis.url
        store = ObjectStore(stack.s3_settings())
        for bucket in BUCKETS:
            store.create_bucket(bucket)
        card = publish_model(home, store, say, train_args, Path(stack.model_dir) if stack.model_dir else None)

        say(f"starting the predictor ({stack.model})")
        spec_file = home / f"{stack.model}.yaml"
        spec_file.write_text(yaml.safe_dump(model_deployment(card, model_uri(stack.model), stack.model)))
        predictor = start_predictor(spec_file, logs, stack.model, env=stack.s3_settings().to_env())
        started.append(predictor.process)

        say("starting the gateway")
        port = gateway_port or (8000 if not port_open("127.0.0.1", 8000) else free_port())
        gateway = start_gateway(logs, gateway_settings(stack, predictor.url), port=port)
        started.append(gateway.process)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    for proc, name, url in zip(
        started,
        ("s3", "redis", "predictor", "gateway"),
        (s3.endpoint_url, f"redis://{redis.host}:{redis.port}", predictor.url, gateway.url),
        strict=True,
    ):
        proc.detach()
        stack.services[name] = Service(proc.pid, url, str(proc.log_path))
    stack.save()
    return stack


@dataclass(frozen=True)
class Samples:
    """What `up` and the demo give a person to try the stack with."""

    dates: list[dt.date]  # the three sample days, oldest first
    labels: dict[str, str | None]  # each manifest path's true label (None: broken on purpose)
    files: list[Path]  # <home>/samples/<name>.png: readable images of the first day
    env_file: Path  # <home>/env.sh


def prepare_samples(running: Stack, per_date: int = 100) -> Samples:
    """Upload the sample days (up to yesterday) with their manifest when missing, copy a few of the
    first day's readable images to `<home>/samples`, and write `<home>/env.sh`."""
    from kubeclassify.cli import sample_data

    store = ObjectStore(running.s3_settings())
    yesterday = dt.date.today() - dt.timedelta(days=1)
    daily = sample_data.upload_daily_images(store, MANIFEST["root"], MANIFEST["uri"], yesterday, per_date)
    folder = Path(running.home) / SAMPLES
    folder.mkdir(exist_ok=True)
    first = sorted(p for p, label in daily.labels.items() if label and p.startswith(f"{daily.dates[0]}/"))
    files = []
    for path in first[:10]:
        target = folder / Path(path).name
        if not target.exists():
            target.write_bytes(store.read(MANIFEST["root"] + path))
        files.append(target)
    env_file = Path(running.home) / ENV_FILE
    env_file.touch(mode=0o600)  # it holds the admin's password, as stack.json does
    env_file.write_text(shell_variables(running, daily.dates, files[0]))
    return Samples(daily.dates, daily.labels, files, env_file)


def shell_variables(running: Stack, dates: list[dt.date], sample: Path) -> str:
    """The lines that `. <home>/env.sh` runs: where the stack answers, the admin's password, a fresh
    access token, a sample image and the sample days, under the names the README's examples use."""
    values = {
        "GATEWAY": running.gateway_url,
        "PREDICTOR": running.services["predictor"].url,
        "MODEL": running.model,
        "PASSWORD": running.admin_password,
        "SAMPLE": str(sample),
        **{f"DAY{n}": day.isoformat() for n, day in enumerate(dates, 1)},
    }
    env_file = Path(running.home) / ENV_FILE
    lines = [
        f"# The local stack in {running.home} (kubeclassify up wrote this): . {env_file}",
        f"export KUBECLASSIFY_HOME={shlex.quote(running.home)}",
        *(f"{name}={shlex.quote(value)}" for name, value in values.items()),
        f"TOKEN=$({shlex.quote(sys.executable)} -m kubeclassify.core.cli token)  # the admin's, for an hour",
    ]
    return "\n".join(lines) + "\n"


def gateway_settings(stack: Stack, predictor_url: str) -> dict[str, str]:
    """The gateway's `KUBECLASSIFY_*` variables for the local stack."""
    gateway = {
        "REDIS_URL": stack.redis_url,
        "TOKEN_SECRET": stack.token_secret,
        "ADMIN_USERNAME": ADMIN,
        "ADMIN_PASSWORD": stack.admin_password,
        # A stack on this machine: anyone here may sign up (a few accounts an hour per address),
        # and each account has credits to try things with.
        "REGISTRATION": "open",
        "STARTING_CREDITS": "1000",
        "IMAGES_URI": "s3://kubeclassify/images",
        "BATCHES_URI": "s3://kubeclassify/batches",
        "PREDICTORS": json.dumps({stack.model: predictor_url}),
        "DEFAULT_MODEL": stack.model,
        "MANIFEST": json.dumps(MANIFEST),
        "BATCH_BACKEND": "local",
    }
    return {
        "KUBECLASSIFY_LOG_FORMAT": "json",
        **stack.s3_settings().to_env(),
        **{f"KUBECLASSIFY_GATEWAY__{k}": v for k, v in gateway.items()},
    }


def read_card(export: Path) -> ModelCard:
    """The card of an exported model; ValueError says what is missing."""
    path = export / CARD_FILE
    if not path.is_file():
        raise ValueError(
            f"{export} is not an exported model: it has no {CARD_FILE} (`kubeclassify train` writes one)"
        )
    return ModelCard.model_validate_json(path.read_text())


def publish_model(
    home: Path,
    store: ObjectStore,
    say: Callable[[str], None],
    train_args: tuple[str, ...] = (),
    export: Path | None = None,
) -> ModelCard:
    """The served model in S3, uploaded when S3 has another (or none): `export`, or the digits model,
    trained first (on digits the demo never shows it) when none is exported yet."""
    if export is None:
        export = home / "models" / MODEL
        train_digits(home, export, say, train_args)
    card = read_card(export)
    uri = model_uri(card.name)
    if (
        not store.exists(uri + CARD_FILE)
        or ModelCard.model_validate_json(store.read(uri + CARD_FILE)) != card
    ):
        for path in sorted(p for p in export.rglob("*") if p.is_file()):
            store.write(uri + path.relative_to(export).as_posix(), path.read_bytes())
    return card


def train_digits(home: Path, export: Path, say: Callable[[str], None], train_args: tuple[str, ...]) -> None:
    """Train the digits model into `export`, unless it is there already."""
    if not (export / CARD_FILE).exists():
        from kubeclassify.cli import sample_data

        train_dir = sample_data.write_training_set(home / "data" / "train")
        say("training the digits model (a minute or so, once)")
        argv = [
            sys.executable,
            "-m",
            "kubeclassify.core.cli",
            "train",
            str(train_dir),
            "--output",
            str(export),
        ]
        argv += ["--name", MODEL, *sample_data.TRAIN_FLAGS, *train_args]
        with open(home / "logs" / "train.log", "ab") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"training failed (exit {done.returncode}); see {home / 'logs' / 'train.log'}")


def down(home: Path, say: Callable[[str], None] = print) -> list[str]:
    """Stop every process of the stack recorded in `home` (gateway first); returns their names."""
    stack = Stack.load(home)
    if stack is None:
        return []
    stopped = []
    for name in ("gateway", "predictor", "redis", "s3"):
        service = stack.services.get(name)
        if service is not None and alive(service.pid):
            stop_pid(service.pid)
            stopped.append(name)
            say(f"stopped {name} (pid {service.pid})")
    stack.services = {}
    stack.save()
    return stopped


def stop_pid(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group `pid` leads, then SIGKILL it after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def status(home: Path) -> dict[str, Any]:
    """Each service with its PID, URL and whether it answers; empty when nothing was started."""
    stack = Stack.load(home)
    if stack is None or not stack.services:
        return {}
    return {
        name: {"pid": s.pid, "url": s.url, "healthy": healthy(name, s), "log": s.log}
        for name, s in stack.services.items()
    }
