"""Start the Kubernetes API emulator as a process, with our CRDs and KServe's, and a kubeconfig
that points at it (the tests' fixture and the operator benchmark share this)."""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubeclassify.cli.processes import LocalProcess, free_port, port_open, start_process

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "kubeclassify-crds" / "templates"
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else ROOT / "shared"
KSERVE_CRD = SHARED / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"


@dataclass
class KubeApi:
    """The emulator process and where it answers."""

    process: LocalProcess
    url: str

    def stop(self) -> None:
        self.process.stop()


def start_kube_api(log_dir: Path) -> KubeApi:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("kubeapi.py")), "--port", str(port)]
    for crd in [*sorted(CRD_DIR.glob("*.yaml")), KSERVE_CRD]:
        argv += ["--crd", str(crd)]
    process = start_process("kubeapi", argv, log_dir, lambda: port_open("127.0.0.1", port), timeout=30)
    return KubeApi(process, f"http://127.0.0.1:{port}")


def kubeconfig_for(url: str, path: Path) -> Path:
    """A kubeconfig for the emulator at `url` (any token is accepted)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
                "contexts": [
                    {
                        "name": "emulator",
                        "context": {"cluster": "emulator", "user": "tester", "namespace": "default"},
                    }
                ],
                "current-context": "emulator",
            }
        )
    )
    return path


def inject_fault(url: str, method: str, path: str, status: int = 500, times: int = 1) -> None:
    """Answer the next `times` requests of `method` whose URL path matches the regex `path` with
    `status`, as an API server in trouble would; they change nothing."""
    body = json.dumps({"method": method, "path": path, "status": status, "times": times}).encode()
    request = urllib.request.Request(f"{url}/_faults", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


def append_pod_log(url: str, namespace: str, pod: str, text: str) -> None:
    """Add to a pod's log, as its container's output (the emulator's kubelet side)."""
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(f"{url}/_logs/{namespace}/{pod}", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()
