"""The `kubeclassify` command: a thin root whose subcommands come from the installed components.

Each component registers its commands under the `kubeclassify.commands` entry-point group. A
command module stays light (heavy imports happen inside the command), so `--help` is fast and an
image without TensorFlow still runs its own commands.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points, version

from pydantic import ValidationError  # the settings' errors (pydantic is loaded by then anyway)


def build_parser() -> argparse.ArgumentParser:
    """The root parser with every installed component's subcommands."""
    parser = argparse.ArgumentParser(
        prog="kubeclassify", description="Kubernetes-native image classification."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('kubeclassify')}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for ep in sorted(entry_points(group="kubeclassify.commands"), key=lambda e: e.name):
        ep.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):  # e.g. `serve`: its own program parses the rest
        args.args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValidationError as e:  # settings from KUBECLASSIFY_* variables, or a file given
        print(f"kubeclassify: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        print(
            f"kubeclassify: this command needs {e.name!r}, which is not installed here;"
            " install the component's extra, e.g. pip install 'kubeclassify[inference,cpu]'",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
