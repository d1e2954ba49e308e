"""Download and verify datasets: `python scripts/download_data.py [--dataset all|shakespeare|ptb|wikitext]`.

A thin wrapper over `tinylm data download`.
"""

import argparse
import sys

from tinylm.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="all", help="all | shakespeare | ptb | wikitext")
    args, rest = parser.parse_known_args()
    sys.exit(main(["data", "download", args.dataset, *rest]))
