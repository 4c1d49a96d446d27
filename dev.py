#!/usr/bin/env python3
"""The project's two set-up commands, for a machine that has only Python 3.11+.

    python3 dev.py run     start the server with demo data on http://127.0.0.1:8000
    python3 dev.py test    lint, type-check and run the whole test suite

Both create ``.venv`` and install the project into it on first use, and again whenever
``pyproject.toml`` changes. Extra arguments go to the server or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def python() -> str:
    return str(BIN / ("python.exe" if os.name == "nt" else "python"))


def ensure_environment() -> None:
    """Create the virtualenv and install the project with its test tools, once per pyproject."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under any python3 first
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and Path(python()).exists():
        return
    if not Path(python()).exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing the project and its test tools into .venv", flush=True)
    run([python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([python(), "-m", "pip", "install", "--quiet", "-e", ".[test]"])
    stamp.write_text(wanted)


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def serve(args: list[str]) -> None:
    env = dict(os.environ)
    env.setdefault("GIFTING_DEMO", "1")
    os.chdir(ROOT)
    os.execve(python(), [python(), "-m", "server", *args], env)


def test(args: list[str]) -> None:
    run([python(), "-m", "ruff", "check", "."])
    run([python(), "-m", "ruff", "format", "--check", "--quiet", "."])
    run([python(), "-m", "mypy"])
    run([python(), "-m", "pytest", *args])


def main() -> None:
    commands = {"run": serve, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    ensure_environment()
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
