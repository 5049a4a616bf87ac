"""docker-compose.yml under Podman for the compose test: podman-compose with the project's Podman
settings (scripts/compose-env), one compose project per test run, every container, volume and
network of that project removed at the end."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from infra.ports import free_ports, port_is_free

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PROJECT_LABEL = "io.podman.compose.project"
# The ports docker-compose.yml reads from the environment; Kafka's controller takes the port
# after RECSYS_KAFKA_PORT.
PORT_VARIABLES = (
    "RECSYS_KAFKA_PORT", "RECSYS_SPARK_MASTER_PORT", "RECSYS_SPARK_MASTER_UI_PORT",
    "RECSYS_SPARK_WORKER_PORT", "RECSYS_SPARK_WORKER_UI_PORT", "RECSYS_SPARK_UI_PORT",
    "RECSYS_API_PORT",
)


def compose_environment() -> dict[str, str]:
    """This process's environment plus what scripts/compose-env exports."""
    done = subprocess.run(["bash", "-c", "source scripts/compose-env && env -0"], cwd=REPO,
                          capture_output=True, check=True, timeout=60)
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def pick_ports(first: int | None = None) -> dict[str, int]:
    """A port for each of PORT_VARIABLES, free now: from `first` on, one after the other, else
    from the OS; Kafka's is one whose next port is free too (its controller)."""
    if first is not None:
        ports = dict(zip(PORT_VARIABLES, range(first, first + 2 * len(PORT_VARIABLES), 2),
                         strict=True))
    else:
        ports = dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
        while not port_is_free(ports["RECSYS_KAFKA_PORT"] + 1) or (
                ports["RECSYS_KAFKA_PORT"] + 1 in ports.values()):
            ports["RECSYS_KAFKA_PORT"] = free_ports(1)[0]
    return ports


class ComposeStack:
    """One compose project of docker-compose.yml, driven through podman-compose."""

    def __init__(self, project: str, env: Mapping[str, str]) -> None:
        self.project = project
        self.env = dict(env)

    def compose(self, *args: str, timeout: float, env: Mapping[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """`podman-compose -p <project> -f docker-compose.yml <args>`; its output is returned."""
        cmd = [str(REPO / ".venv" / "bin" / "podman-compose"), "-p", self.project,
               "-f", str(REPO / "docker-compose.yml"), *args]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=REPO, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)
        log.info("podman-compose %s: exit %d in %.1f s", " ".join(args), done.returncode,
                 time.monotonic() - started)
        if check and done.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed "
                                 f"(exit {done.returncode}):\n{done.stderr[-4000:]}")
        return done

    def podman(self, *args: str, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """`podman <args>` with the project's Podman settings."""
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed (exit {done.returncode}): "
                                 f"{done.stderr.strip()[-2000:]}")
        return done

    def container(self, service: str) -> str:
        """The name podman-compose gives the service's (only) container."""
        return f"{self.project}_{service}_1"

    def inspect(self, service: str) -> dict[str, Any]:
        """`podman inspect` of the service's container."""
        return json.loads(self.podman("inspect", self.container(service)).stdout)[0]

    def state(self, service: str) -> tuple[str, int, int]:
        """(status, exit code, restart count) of the service's container."""
        info = self.inspect(service)
        return info["State"]["Status"], info["State"]["ExitCode"], info.get("RestartCount", 0)

    def healthy(self, service: str) -> bool:
        """Whether the service's health check passes now (run by hand: Podman without systemd
        does not run health checks by itself)."""
        done = self.podman("healthcheck", "run", self.container(service), check=False)
        return done.returncode == 0

    def logs(self, service: str) -> str:
        """The container's output so far (stdout and stderr)."""
        done = self.podman("logs", self.container(service), check=False)
        return done.stdout + done.stderr

    def volume_dir(self, volume: str) -> Path:
        """Where a named volume of the project lives on the host."""
        done = self.podman("volume", "inspect", f"{self.project}_{volume}",
                           "--format", "{{.Mountpoint}}")
        return Path(done.stdout.strip())

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers, volumes and networks that still exist."""
        label = f"label={PROJECT_LABEL}={self.project}"
        found = {
            "containers": self.podman("ps", "-a", "--filter", label, "--format",
                                      "{{.Names}}").stdout.split(),
            "volumes": self.podman("volume", "ls", "--filter", label, "--format",
                                   "{{.Name}}").stdout.split(),
            "networks": [n for n in self.podman("network", "ls", "--format",
                                                "{{.Name}}").stdout.split()
                         if n.startswith(f"{self.project}_")],
        }
        return found

    def down(self) -> dict[str, list[str]]:
        """`down -v`, then whatever it left (a failed start) removed by the project's label;
        returns what `down` itself left."""
        self.compose("down", "-v", "-t", "60", timeout=900, check=False)
        left = self.leftovers()
        for name in left["containers"]:
            self.podman("rm", "-f", "-t", "10", name, check=False)
        for name in left["volumes"]:
            self.podman("volume", "rm", "-f", name, check=False)
        for name in left["networks"]:
            self.podman("network", "rm", "-f", name, check=False)
        return left


def sweep_stale_projects(prefix: str, env: Mapping[str, str]) -> list[str]:
    """Remove the compose projects `<prefix><pid>` of test runs whose process is gone (killed
    before their clean-up); returns their names."""
    template = f'{{{{index .Labels "{PROJECT_LABEL}"}}}}'
    done = subprocess.run(["podman", "ps", "-a", "--format", template], env=dict(env),
                          capture_output=True, text=True, timeout=120, check=False)
    stale = []
    for project in sorted(set(done.stdout.split())):
        pid = project.removeprefix(prefix)
        if project.startswith(prefix) and pid.isdigit() and not psutil.pid_exists(int(pid)):
            log.info("removing the stale compose project %s", project)
            ComposeStack(project, env).down()
            stale.append(project)
    return stale


def env_flag(name: str) -> int | None:
    """An integer from the environment, or None when unset."""
    value = os.environ.get(name)
    return int(value) if value else None
