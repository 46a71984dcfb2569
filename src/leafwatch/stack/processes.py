"""Running the Debian-packaged Prometheus and Alertmanager binaries for a local stack."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from leafwatch.stack.config import StackError, StackFiles, StackOptions, write_stack_files

# Binary names to look for on PATH, and the Debian package that installs them.
PROMETHEUS = (("prometheus",), "prometheus")
ALERTMANAGER = (("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager")


def find_binary(names: tuple[str, ...], package: str) -> Path:
    """The first of `names` on PATH; StackError naming the Debian package when none is there."""
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise StackError(
        f"{' or '.join(names)} not found on PATH: install the Debian package {package}"
        f" (apt-get install {package})"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Process:
    """One server process: started with its output in a log file, ready on /-/ready, stopped."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        url: str,
        log: Path,
        ready_path: str = "/-/ready",
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.url = url
        self.log = log
        self.ready_path = ready_path
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        """Start the process, its output in the log file (replacing an earlier run's)."""
        with self.log.open("wb") as output:
            self.popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                # Its own session: Ctrl-C reaches `leafwatch stack`, which stops it in order.
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Return once the ready path answers 200; StackError with the log if it exits or stalls."""
        assert self.popen is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            code = self.popen.poll()
            if code is not None or time.monotonic() > deadline:
                state = f"exited with {code}" if code is not None else f"not ready in {timeout:g} s"
                raise StackError(f"{self.name} {state}; end of {self.log}:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float) -> None:
        """Terminate, wait up to `timeout` seconds, then kill."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def exit_code(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return None if self.popen is None else self.popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class LocalStack:
    """Prometheus and Alertmanager on this machine, configured from the shipped files.

    `with LocalStack(options) as stack:` renders the configuration into `options.data_dir`,
    starts both, returns once each is ready, and stops both when the block ends, even on errors.
    """

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.files: StackFiles | None = None
        self.prometheus_port = options.prometheus_port or free_port(options.host)
        self.alertmanager_port = options.alertmanager_port or free_port(options.host)
        self.prometheus_url = f"http://{options.host}:{self.prometheus_port}"
        self.alertmanager_url = f"http://{options.host}:{self.alertmanager_port}"
        self.processes: list[Process] = []

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration, start Alertmanager and then Prometheus, wait for both."""
        options = self.options
        prometheus = find_binary(*PROMETHEUS)
        alertmanager = find_binary(*ALERTMANAGER)
        self.files = write_stack_files(
            options, prometheus_port=self.prometheus_port, alertmanager_port=self.alertmanager_port
        )
        data = options.data_dir.resolve()
        host = options.host
        prometheus_command = [
            str(prometheus),
            f"--config.file={self.files.prometheus}",
            f"--storage.tsdb.path={data / 'prometheus'}",
            f"--web.listen-address={host}:{self.prometheus_port}",
            f"--web.external-url={self.prometheus_url}",
            "--enable-feature=exemplar-storage",
        ]
        alertmanager_command = [
            str(alertmanager),
            f"--config.file={self.files.alertmanager}",
            f"--storage.path={data / 'alertmanager'}",
            f"--web.listen-address={host}:{self.alertmanager_port}",
            f"--web.external-url={self.alertmanager_url}",
            "--cluster.listen-address=",  # one instance: no gossip port to bind
        ]
        if options.lifecycle:
            prometheus_command.append("--web.enable-lifecycle")
        # Alertmanager first, so that Prometheus's first alerts have somewhere to go.
        self.processes = [
            Process(
                "alertmanager",
                alertmanager_command,
                url=self.alertmanager_url,
                log=data / "alertmanager.log",
            ),
            Process(
                "prometheus",
                prometheus_command,
                url=self.prometheus_url,
                log=data / "prometheus.log",
            ),
        ]
        env = {**os.environ, **options.env}
        try:
            for process in self.processes:
                process.start(env)
                process.wait_ready(options.ready_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop Prometheus and then Alertmanager (terminate, then kill after `timeout` s)."""
        for process in reversed(self.processes):
            process.stop(timeout)

    def prometheus_page(self, page: str) -> str:
        """The URL of a Prometheus UI page (`alerts`, `targets`) in the build that runs."""
        # Debian's package has only the classic UI (the React one needs npm to build), under
        # /classic; upstream builds serve the page at the top.
        for path in (f"/{page}", f"/classic/{page}"):
            try:
                if httpx.get(f"{self.prometheus_url}{path}", timeout=5).status_code == 200:
                    return f"{self.prometheus_url}{path}"
            except httpx.TransportError:
                break
        return f"{self.prometheus_url}/{page}"

    def exited(self) -> dict[str, int]:
        """Exit codes of the processes that have ended, by name (empty while all run)."""
        codes = {process.name: process.exit_code() for process in self.processes}
        return {name: code for name, code in codes.items() if code is not None}
