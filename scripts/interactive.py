"""Interactive prompt: `python scripts/interactive.py [--model attention] [--temperature 0.5]`.

A thin wrapper over `tinylm chat`; at the prompt, `temp 0.3`, `help` and `quit` work (see --help).
"""

import sys

from tinylm.cli import main

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))
