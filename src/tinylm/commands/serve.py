"""`tinylm serve`: the playground page over the runs of the working folder and the shipped ones."""

from __future__ import annotations

import argparse

from tinylm.device import pick_device
from tinylm.paths import Paths
from tinylm.web.playground import Playground
from tinylm.web.server import serve


def cmd_serve(args: argparse.Namespace) -> int:
    pick_device(args.device)  # a bad --device is said before the server starts
    serve(Playground(Paths.of(args.results_dir, args.data_dir, args.mirror), device=args.device), args.host,
          args.port)
    return 0
