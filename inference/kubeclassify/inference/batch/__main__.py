import sys

from kubeclassify.inference.batch.cli import main

sys.exit(main())
