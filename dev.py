#!/usr/bin/env python3
"""The project's two set-up commands, for a machine that has only Python 3.11+.

    python3 dev.py run     start the server with demo data on http://127.0.0.1:8000
    python3 dev.py test    lint, type-check and run the whole test suite

Both create ``.venv`` and install the project into it on first use, and again whenever
``pyproject.toml`` changes: ``run`` only what the server needs, ``test`` its test tools too.
Extra arguments go to the server or to pytest.
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


def ensure_environment(with_tests: bool) -> None:
    """Create the virtualenv and install the project, with its test tools if ``with_tests``,
    once per pyproject: an environment that has the test tools serves the server too."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under any python3 first
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    stamp = VENV / ".installed"
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = stamp.read_text().split() if stamp.exists() and Path(python()).exists() else []
    if installed[:1] == [pyproject] and (not with_tests or "test" in installed[1:]):
        return
    if not Path(python()).exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print(f"installing the project{' and its test tools' if with_tests else ''} into .venv", flush=True)
    run([python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([python(), "-m", "pip", "install", "--quiet", "-e", ".[test]" if with_tests else "."])
    stamp.write_text(f"{pyproject} test" if with_tests else pyproject)


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
    ensure_environment(with_tests=sys.argv[1] == "test")
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
