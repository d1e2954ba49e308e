"""`python -m tinylm.cli ARGS` in a fresh process per call, without paying torch's import each time.

A server process imports tinylm.cli once (no computation, so no thread pool exists yet) and then forks one child per
request: the child gets its own stdin (/dev/null), stdout and stderr (files), runs the CLI module as __main__ exactly
as `python -m` does, runs the exit handlers and exits with the CLI's status. An exception that escapes prints its
traceback to stderr and exits 1, like the interpreter. What the CLI reads from the environment at import time is the
server's: tinylm reads its environment when it acts (its fault-injection switches too), not when it is imported, so
a request may bring its own environment and folder.

Protocol (one JSON object per line): the test writes {"args": [...], "out": prefix, "cwd": folder or null, "env":
{...} or null}; the server answers {"code": n} once the child has exited, its output in prefix.stdout and
prefix.stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _serve() -> None:
    import atexit
    import runpy
    import traceback

    import tinylm.cli  # noqa: F401  (the import the children share)

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.chdir(request.get("cwd") or ".")
            if request.get("env") is not None:
                os.environ.clear()
                os.environ.update(request["env"])
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["out"] + ".stdout", os.O_WRONLY),
                                   (2, request["out"] + ".stderr", os.O_WRONLY)):
                os.dup2(os.open(path, mode | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o644), fd)
            sys.stdin = open(os.devnull)  # nothing of the server's request stream reaches the CLI
            sys.argv = ["tinylm.cli", *request["args"]]
            sys.modules.pop("tinylm.cli", None)  # run as __main__ from its source, as `python -m` does; the rest stays
            try:
                runpy.run_module("tinylm.cli", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:  # noqa: BLE001  (as the interpreter does)
                traceback.print_exc()
                code = 1
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


class CLI:
    """Runs the CLI in forked children of one server (see the module docstring); close() ends the server."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd, self.calls = Path(cwd), 0
        self.server = subprocess.Popen([sys.executable, __file__], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str], out_dir: Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Like subprocess.run([python, -m, tinylm.cli, *args], capture_output=True, text=True, cwd=cwd, env=env)
        (the server's folder and environment where they are None)."""
        self.calls += 1
        prefix = Path(out_dir) / f"cli-{self.calls}"
        request = {"args": args, "out": str(prefix), "cwd": str(cwd) if cwd else None, "env": env}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        answer = self.server.stdout.readline()
        assert answer, "the CLI server died"
        code = json.loads(answer)["code"]
        out, err = (Path(f"{prefix}.{s}").read_text() for s in ("stdout", "stderr"))
        return subprocess.CompletedProcess(args, code, out, err)

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


if __name__ == "__main__":
    _serve()
