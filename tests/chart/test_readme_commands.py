"""Every command in the READMEs works as written, or as close as this machine allows: `make` targets
exist; `kubeclassify` command lines parse with the real parser; `helm install` lines render with
`helm template` and the same flags; `kubectl` lines run with the real kubectl against the API
emulator (`explain` and `wait` are checked against the CRDs, which the emulator cannot serve);
`curl` lines name an endpoint and method the gateway's OpenAPI schema (or KServe's protocol) has.
A command of any other kind fails the test: each one must be covered somewhere. The blocks that use
the local stack's variables (`. .local/stack/env.sh`) also run for real, line by line, against a
stack that `kubeclassify up` started (tests/integration/test_local_stack.py)."""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.readme import Command, commands, inner
from harness.schemas import ROOT, load_crds, schema_errors

from kubeclassify.core.policy import Policy, batch_denials, model_denials
from kubeclassify.core.resources.classification_batch import ClassificationBatch
from kubeclassify.core.resources.model_deployment import ModelDeployment

KSERVE_PATHS = [r"/v1/models/(?:[\w-]+|\$MODEL):predict", r"/v2/models/(?:[\w-]+|\$MODEL)/infer"]


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from kubeclassify.gateway.app import create_app
    from kubeclassify.gateway.config import GatewaySettings

    return create_app(GatewaySettings(environment="development")).openapi()  # type: ignore[no-any-return]


def kubectl(kube_api: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real kubectl against the API emulator, from the repository root."""
    argv = [
        str(Path(sys.prefix) / "bin" / "kubectl"),
        "--kubeconfig",
        str(kube_api.kubeconfig),
        "-n",
        namespace,
    ]
    if args[0] == "apply":  # the emulator serves no OpenAPI: our own schema check runs instead
        args = (*args, "--validate=false")
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def examples_applied(kube_api: Any) -> None:
    """The examples the READMEs' kubectl lines act on, so that each line can run alone."""
    for example in ("modeldeployment-digits.yaml", "batch-daily.yaml"):
        assert kubectl(kube_api, "kubeclassify", "apply", "-f", f"examples/{example}").returncode == 0


def test_the_cluster_walk_through_is_one_story(kube_api: Any) -> None:
    """The README's kubectl lines applied in order to an empty namespace: each ClassificationBatch names
    a ModelDeployment applied before it, and any Secret it names exists (none: the webhook is optional)."""
    namespace = f"walk-{secrets.token_hex(3)}"
    applied: dict[str, set[str]] = {"ModelDeployment": set(), "ClassificationBatch": set()}
    for found in commands():
        words = shlex.split(inner(found.line))
        if found.readme != "README.md" or words[:1] != ["kubectl"] or "apply" not in words:
            continue
        path = ROOT / words[words.index("-f") + 1]
        done = kubectl(kube_api, namespace, "apply", "-f", str(path))
        assert done.returncode == 0, done.stderr
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc["spec"]
            if doc["kind"] == "ClassificationBatch":
                assert spec["modelRef"]["name"] in applied["ModelDeployment"], (path.name, applied)
                assert "webhook" not in spec or "secretName" not in spec["webhook"], path.name
            applied[doc["kind"]].add(doc["metadata"]["name"])
    assert applied["ModelDeployment"] and applied["ClassificationBatch"]


def test_the_readmes_have_commands() -> None:
    kinds = {inner(c.line).split()[0].rsplit("/", 1)[-1] for c in commands()}
    assert {"make", "kubeclassify", "helm", "kubectl", "curl", "."} <= kinds
    assert any(c.live for c in commands())


@pytest.mark.parametrize("found", commands(), ids=lambda c: c.line[:60])
def test_a_readme_command_works(
    found: Command,
    helm: str,
    chart: Path,
    kube_api: Any,
    openapi: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    readme, command = found.readme, found.line
    line = inner(command)
    program = line.split()[0].rsplit("/", 1)[-1]
    if program == ".":  # only the local stack's variables are sourced: they are run live
        assert found.live and line == ". .local/stack/env.sh", command
        return
    if program == "curl":
        _curl(line, openapi)
        return
    words = shlex.split(line)
    if program == "make":
        makefile = (ROOT / "Makefile").read_text()
        assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"no make target {words[1]}"
    elif program == "kubeclassify":
        _parses(words[1:])
    elif program == "helm":
        _helm(words[1:], helm, chart)
    elif program == "kubectl":
        request.getfixturevalue("examples_applied")
        _kubectl(words[1:], kube_api, helm, chart)
    else:
        pytest.fail(f"{readme}: nothing checks `{command}`: cover it in this test")


def _parses(args: list[str]) -> None:
    from kubeclassify.core.cli import build_parser

    parser = build_parser()
    try:
        parsed, rest = parser.parse_known_args(args)
    except SystemExit as e:  # --help exits 0; a bad flag exits 2
        assert e.code == 0, f"kubeclassify {' '.join(args)} does not parse"
        return
    assert hasattr(parsed, "func"), args
    assert not rest or getattr(parsed, "passthrough", False), f"unknown arguments {rest}"


def _helm(args: list[str], helm: str, chart: Path) -> None:
    if args[:2] == ["dependency", "build"]:
        assert (ROOT / args[2] / "Chart.yaml").exists()  # the `chart` fixture ran this very command
        return
    assert args[0] in ("install", "template"), args
    name, path, *flags = args[1:]
    local = chart if path.rstrip("/") == "charts/kubeclassify" else ROOT / path
    flags = [f for f in flags if f != "--create-namespace"]
    done = subprocess.run(
        [helm, "template", name, str(local), *flags], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert docs
    if any(f.startswith("gateway.tokenSecret.existingSecret=") for f in flags):  # the GitOps render
        assert not [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"], "no Secret is generated"


def _rendered(helm: str, chart: Path) -> list[dict[str, Any]]:
    """The chart as the READMEs install it (release kubeclassify in namespace kubeclassify)."""
    done = subprocess.run(
        [helm, "template", "kubeclassify", str(chart), "-n", "kubeclassify"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _kubectl(args: list[str], kube_api: Any, helm: str, chart: Path) -> None:
    namespace = "kubeclassify"
    if args[:1] == ["-n"]:
        namespace, args = args[1], args[2:]
    verb = args[0]
    crds = load_crds()
    if verb == "explain":
        kind, *path = args[1].split(".")
        crd = next(c for c in crds.values() if c["spec"]["names"]["singular"] == kind)
        node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in path:
            node = node["properties"][part]
        return
    if verb == "wait":
        kind = args[1].split("/")[0]
        crd = next(c for c in crds.values() if c["spec"]["names"]["singular"] == kind)
        assert "--for=condition=Ready" in args and "Ready" in yaml.safe_dump(crd)
        return
    if verb in ("port-forward", "get") and any(a.startswith(("svc/", "secret")) for a in args):
        names = {f"{d['kind']}/{d['metadata']['name']}" for d in _rendered(helm, chart)}
        target = args[1] if verb == "port-forward" else f"secret/{args[2]}"
        kind, name = target.split("/")
        assert f"{ {'svc': 'Service', 'secret': 'Secret'}[kind] }/{name}" in names, (target, sorted(names))
        return
    if args[:2] == ["create", "secret"]:  # kubectl sends Secrets as protobuf, which the emulator cannot
        done = kubectl(kube_api, namespace, *args, "--dry-run=client", "-o", "json")  # read: built here
        assert done.returncode == 0, done.stderr
        secret = json.loads(done.stdout)
        assert secret["kind"] == "Secret" and secret["data"], secret
        # the keys the chart reads from such a Secret
        assert set(secret["data"]) <= {"token-secret", "password", "password-hash", "url", "secret"}, secret
        return
    if verb == "apply":
        for doc in yaml.safe_load_all((ROOT / args[args.index("-f") + 1]).read_text()):
            assert schema_errors(doc, crds) == [], args
    done = kubectl(kube_api, namespace, *args)
    assert done.returncode == 0, done.stderr


def _curl(line: str, openapi: dict[str, Any]) -> None:
    url = re.search(
        r"(?:(?:https?://)?(?:localhost|127\.0\.0\.1):\d+|\$GATEWAY|\$PREDICTOR)(/[^\s\"']*)", line
    )
    assert url, line
    (path,) = url.groups()
    if any(re.fullmatch(p, path) for p in KSERVE_PATHS):
        return
    method = "post" if re.search(r"-X POST|\s-d\s|\s-F\s|--data", line) else "get"
    for template, operations in openapi["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", template), path) and method in operations:
            return
    pytest.fail(f"the gateway has no {method.upper()} {path}")


def test_the_readme_install_lets_its_own_walk_through_pass_its_policy(helm: str, chart: Path) -> None:
    """The operator's policy, as the README's `helm install` renders it, admits every resource the
    README applies in its namespace, and the same resources in a namespace it does not list are denied."""
    install = next(
        shlex.split(inner(c.line))
        for c in commands()
        if c.readme == "README.md"
        and inner(c.line).startswith("helm install kubeclassify charts/kubeclassify")
    )
    flags = [f for f in install[4:] if f != "--create-namespace"]
    done = subprocess.run(
        [helm, "template", "kubeclassify", str(chart), *flags], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    config = next(
        d
        for d in yaml.safe_load_all(done.stdout)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator")
    )
    policy = Policy.model_validate_json(config["data"]["KUBECLASSIFY_OPERATOR__POLICY"])
    applied = [
        doc
        for found in commands()
        if found.readme == "README.md"
        and (words := shlex.split(inner(found.line)))[:1] == ["kubectl"]
        and "apply" in words
        for doc in yaml.safe_load_all((ROOT / words[words.index("-f") + 1]).read_text())
    ]
    models = {
        d["metadata"]["name"]: ModelDeployment.model_validate(d).spec
        for d in applied
        if d["kind"] == "ModelDeployment"
    }
    assert models
    for namespace, allowed in (("kubeclassify", True), ("elsewhere", False)):
        for doc in applied:
            if doc["kind"] == "ModelDeployment":
                denials = model_denials(policy, namespace, models[doc["metadata"]["name"]])
            else:
                cb = ClassificationBatch.model_validate(doc)
                denials = batch_denials(policy, namespace, cb.spec, None, models[cb.spec.model_ref.name])
            assert (denials == []) == allowed, (namespace, doc["metadata"]["name"], denials)
