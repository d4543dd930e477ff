"""Runs several CLI commands in one process for tests/cli_subprocess.py (not a test module).

stdin: a JSON list of argument lists; stdout: a JSON list of {code, stdout, stderr}.
"""

from __future__ import annotations

import io
import json
import sys
import time
import traceback


def main() -> None:
    import typer

    from harness.cli import app

    command = typer.main.get_command(app)
    commands = json.load(sys.stdin)
    real_out, real_err = sys.stdout, sys.stderr
    results = []
    for args in commands:
        out, err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        code = 0
        start = time.monotonic()
        try:
            command.main(args=args, prog_name="harness", standalone_mode=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # what a user would see as a traceback
            traceback.print_exc(file=err)
            code = 1
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        real_err.write(f"{time.monotonic() - start:6.2f}s exit {code}: {' '.join(args)[:120]!r}\n")
        real_err.flush()
        results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    real_out.write(json.dumps(results))


if __name__ == "__main__":
    main()
