"""The commands the READMEs give, for the tests that check them (statically, and live against the
local stack)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.schemas import ROOT

READMES = ["README.md", "charts/kubeclassify/README.md", "charts/kubeclassify-crds/README.md"]

# A block that uses the local stack's variables (from `. .local/stack/env.sh`) runs, line by line,
# against a live stack (tests/integration/test_local_stack.py).
STACK_VARIABLES = ("$GATEWAY", "$PREDICTOR", "$MODEL", "$SAMPLE", "$DAY", ".local/stack/env.sh")


@dataclass(frozen=True)
class Command:
    readme: str
    line: str  # continuations joined
    live: bool  # from a block that uses the local stack's variables


def commands() -> list[Command]:
    """Every command line in the READMEs' sh blocks, in order."""
    found = []
    for readme in READMES:
        for block in re.findall(r"```sh\n(.*?)```", (ROOT / readme).read_text(), re.S):
            live = any(v in block for v in STACK_VARIABLES)
            block = re.sub(r"\\\n\s*", " ", block)
            block = re.sub(r",\n\s+", ", ", block)  # a JSON body that goes on to the next line
            for line in block.splitlines():
                line = re.split(r"\s+#\s", line)[0].strip().rstrip("&").strip()
                if line and not line.startswith("#"):
                    found.append(Command(readme, line, live))
    return found


def inner(command: str) -> str:
    """The command inside `NAME=$(...)`, or the command without leading variable assignments, and
    without a redirection of its output (`> file`)."""
    command = re.split(r"\s+>\s+", command)[0]
    wrapped = re.fullmatch(r"[A-Z_]+=\$\((.*)\)", command)
    if wrapped:
        return wrapped.group(1).split(" | ")[0]
    return re.sub(r"^(?:[A-Z_]+=(?:\$\([^)]*\)|\S+)\s+)+", "", command)
