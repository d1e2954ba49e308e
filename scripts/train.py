"""Train every model on Tiny Shakespeare: `python scripts/train.py [--quick]` (the full profile, ~1 hour on 2 CPU
cores; --quick: the quick profile with every ablation, under 10 minutes; --layers 2 4 6 etc. sweep an ablation).

A thin wrapper over `tinylm suite`; every option of that command works here (see --help).
"""

import sys

from tinylm.cli import main

if __name__ == "__main__":
    sys.exit(main(["suite", "--dataset", "tinyshakespeare", *sys.argv[1:]]))
