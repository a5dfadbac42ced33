"""Python runs this at start-up when this folder is on PYTHONPATH: the tests put it there while
their clock is moved (see `harness.clock`), so that the processes they start share that clock."""

import os
import sys

# What the variables say is read by `follow_environment`.
if os.environ.get("KUBECLASSIFY_TEST_DAYS_AHEAD") or os.environ.get("KUBECLASSIFY_TEST_NOW"):
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    from harness.clock import follow_environment

    follow_environment()
