"""Generate text: `python scripts/generate.py --model transformer --prompt "HAMLET:" --length 200 [--dataset ptb]`.

A thin wrapper over `tinylm generate`; every option of that command works here (see --help).
"""

import sys

from tinylm.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
