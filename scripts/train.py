"""Train the suite (all models and their ablations) on Tiny Shakespeare: `python scripts/train.py [--quick]`.

A thin wrapper over `tinylm suite`; every option of that command works here (see --help).
"""

import sys

from tinylm.cli import main

if __name__ == "__main__":
    sys.exit(main(["suite", "--dataset", "tinyshakespeare", *sys.argv[1:]]))
