"""Real servers (mosquitto, InfluxDB 1.x, VictoriaMetrics) run as child processes on loopback.

Tests and the demo use them; each instance keeps its config, data and log in one folder of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

__all__ = [
    "Influxd1",
    "LocalStack",
    "Mosquitto",
    "ServerError",
    "ServerProcess",
    "ServerRequestError",
    "VictoriaMetrics",
    "find_binary",
    "free_port",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Debian puts daemons in /usr/sbin, which is often missing from a non-root PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/bin")
_DEBIAN_PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb", "victoria-metrics": "victoria-metrics"}

_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 20
_PORT_PICK_ATTEMPTS = 3
_ADDRESS_IN_USE = "address already in use"

# An empty ProxyHandler, because an http_proxy variable in the environment would send loopback requests
# to the proxy.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_S = TypeVar("_S", bound="ServerProcess")


class ServerError(Exception):
    """A local server could not be found, started, stopped or asked something."""

    def __init__(
        self,
        message: str,
        *,
        server: str,
        command: Sequence[str] = (),
        returncode: int | None = None,
        log_path: Path | None = None,
        log_tail: str = "",
    ) -> None:
        self.server = server
        self.command = tuple(command)
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = log_tail
        parts = [f"{server}: {message}"]
        if command:
            parts.append(f"command: {shlex.join(self.command)}")
        if returncode is not None:
            parts.append(f"exit code: {returncode}")
        if log_path is not None:
            parts.append(f"log: {log_path}")
        if log_tail:
            parts.append("last log lines:\n" + log_tail)
        super().__init__("\n".join(parts))


class ServerRequestError(ServerError):
    """A request to a running server failed: an HTTP error status, no answer, or an error in the reply."""

    def __init__(self, message: str, *, server: str, url: str, status: int | None, body: str) -> None:
        super().__init__(f"{message} ({url})", server=server)
        self.url = url
        self.status = status
        self.body = body


def find_binary(name: str) -> Path:
    """Return the path of the executable `name`, looking in PATH and the Debian system bin folders."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_BIN_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        package = _DEBIAN_PACKAGES.get(name)
        hint = f"install the Debian package {package!r} (apt-get install {package})" if package else "install it"
        where = ", ".join(_EXTRA_BIN_DIRS)
        raise ServerError(f"executable {name!r} not found in PATH or {where}; {hint}", server=name)
    return Path(found)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller binds it, so servers started on such a port retry with a
    new one when they fail with "address already in use".
    """
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    # All bound at once, so that the kernel cannot hand out the same port twice.
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _listening_socket_inodes(port: int) -> set[str] | None:
    """Inodes of the loopback sockets listening on `port`, or None where /proc cannot tell."""
    inodes: set[str] = set()
    seen_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes if seen_table else None


def _pid_listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds the listening socket on `port`.

    A TCP probe alone could be answered by another stack's server that happened to take the same port.
    """
    inodes = _listening_socket_inodes(port)
    if inodes is None:
        return True
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        links = {os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)}
    except OSError:
        return True
    return any(f"socket:[{inode}]" in links for inode in inodes)


def _child_setup() -> Callable[[], None] | None:
    """A preexec function that makes the child die with its parent, where that is cheap and safe.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process. A server launched from a
    worker thread (asyncio.to_thread, a thread pool) would be killed when that thread ends, so the signal is
    set only for children of the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def setup() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        if os.getppid() != parent:
            # The parent died before prctl took effect; nobody would ever stop this child.
            os._exit(1)

    return setup


def _http_request(
    server: str,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read().decode("utf-8", "replace")
        raise ServerRequestError(
            f"HTTP {exc.code} for {method}", server=server, url=url, status=exc.code, body=text
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServerRequestError(f"no answer to {method}: {exc}", server=server, url=url, status=None, body="") from exc


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of GET `url`, or None if nothing answered; for readiness probes."""
    try:
        with _HTTP.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class ServerProcess:
    """The lifecycle of one server child process: launch, wait until ready, stop, kill, start again.

    Subclasses say how to configure and launch the server and how to tell that it is ready. The child's
    stdout and stderr go to `log_path` (a file, so a chatty server can never block on a full pipe).
    """

    name: ClassVar[str]
    binary: ClassVar[str]
    default_startup_timeout: ClassVar[float] = 30.0

    def __init__(self, root: Path | str, *, startup_timeout: float | None = None) -> None:
        self.root = Path(root).resolve()
        self.log_path = self.root / f"{self.name}.log"
        self.startup_timeout = self.default_startup_timeout if startup_timeout is None else startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._command: list[str] = []
        self._log_offset = 0
        self._has_been_ready = False
        self._ports_chosen_by_us = False

    # --- what subclasses provide -------------------------------------------------------------------------

    def _build_command(self, executable: Path) -> list[str]:
        raise NotImplementedError

    def _listen_ports(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _choose_new_ports(self) -> None:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Whether the server answers its protocol; called only once it holds its listening sockets."""
        raise NotImplementedError

    def _child_env(self) -> dict[str, str]:
        return dict(os.environ)

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last child once it has exited (negative: killed by that signal)."""
        return self._process.poll() if self._process is not None else None

    def start(self, timeout: float | None = None) -> Self:
        """Launch the server and wait until it is ready; raise ServerError if it is not."""
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            # Also on Ctrl-C: __exit__ does not run when __enter__ raises, so nobody else would stop it.
            self.kill()
            raise
        return self

    def launch(self) -> None:
        """Start the child process without waiting for it; `wait_ready` completes the start."""
        if self.running:
            raise ServerError("already running", server=self.name, command=self._command)
        if self._process is not None:
            self._process.wait()
        executable = find_binary(self.binary)
        self.root.mkdir(parents=True, exist_ok=True)
        self._command = self._build_command(executable)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            logger.debug("starting %s: %s", self.name, shlex.join(self._command))
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._child_env(),
                # Its own session, so a Ctrl-C in the terminal reaches only us, and we stop it cleanly.
                start_new_session=True,
                preexec_fn=_child_setup(),  # noqa: PLW1509 - only prctl and getppid; see _child_setup
            )
        _LIVE.add(self)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the launched server is ready; raise ServerError (and stop it) if it dies or is late."""
        process = self._process
        if process is None:
            raise ServerError("wait_ready() before launch()", server=self.name)
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        attempts = 1
        while True:
            returncode = process.poll()
            if returncode is not None:
                tail = self.log_tail()
                if (
                    self._ports_chosen_by_us
                    and not self._has_been_ready
                    and attempts < _PORT_PICK_ATTEMPTS
                    and _ADDRESS_IN_USE in tail.lower()
                ):
                    logger.info("%s lost its port race, retrying on new ports", self.name)
                    attempts += 1
                    self._choose_new_ports()
                    self.launch()
                    process = self._process
                    assert process is not None
                    continue
                _LIVE.discard(self)
                raise ServerError(
                    "exited during startup",
                    server=self.name,
                    command=self._command,
                    returncode=returncode,
                    log_path=self.log_path,
                    log_tail=tail,
                )
            if all(_pid_listens_on(process.pid, port) for port in self._listen_ports()) and self._probe():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"not ready within {timeout:g} s",
                    server=self.name,
                    command=self._command,
                    returncode=process.returncode,
                    log_path=self.log_path,
                    log_tail=self.log_tail(),
                )
            time.sleep(_POLL_INTERVAL)
        self._has_been_ready = True
        logger.info("%s ready (pid %d, ports %s)", self.name, process.pid, self._listen_ports())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server with SIGTERM, and SIGKILL it if it has not exited after `timeout` seconds."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) ignored SIGTERM for %g s, killing it", self.name, process.pid, timeout)
                process.kill()
                process.wait()
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; data not yet saved is lost."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        _LIVE.discard(self)

    def _request_stop(self) -> None:
        """Send SIGTERM without waiting, so that several servers shut down in parallel."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines the current (or last) run wrote to its log."""
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, size - 64 * 1024))
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} ports={self._listen_ports()} root={str(self.root)!r}>"


class Mosquitto(ServerProcess):
    """Eclipse mosquitto 2.0 on one loopback listener, anonymous, with persistence in its folder.

    `start()` after `stop()` or `kill()` reuses the same port and persistence file, like a broker restart.
    `extra_config` lines come after the default listener, so a `listener` line among them opens another one
    (TLS, say) and the lines after it configure that listener.
    """

    name = "mosquitto"
    binary = "mosquitto"
    default_startup_timeout = 10.0
    host = LOOPBACK

    def __init__(
        self,
        root: Path | str,
        *,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        startup_timeout: float | None = None,
    ) -> None:
        super().__init__(root, startup_timeout=startup_timeout)
        self._ports_chosen_by_us = port is None
        # mosquitto cannot listen on port 0 and report the port, so we pick one.
        self.port = free_port() if port is None else port
        self.extra_config = tuple(extra_config)
        self.config_path = self.root / "mosquitto.conf"
        self.data_dir = self.root / "data"

    def config_text(self) -> str:
        lines = [
            "# Written by healthhut.devstack on every start; edits are lost.",
            "allow_anonymous true",
            "persistence true",
            # The documented form ends in a slash (older brokers concatenated it with the file name).
            f"persistence_location {self.data_dir}/",
            # Seconds between snapshots: a killed broker loses at most about this much.
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Tests publish bursts to slow or offline persistent sessions; the default 1000 drops messages.
            "max_queued_messages 100000",
            "max_inflight_messages 100",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto 2.0 drops to the user "mosquitto", which then cannot read 0600 keys.
            lines.append("user root")
        lines.append(f"listener {self.port} {self.host}")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def _build_command(self, executable: Path) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return [str(executable), "-c", str(self.config_path)]

    def _listen_ports(self) -> tuple[int, ...]:
        return (self.port,)

    def _choose_new_ports(self) -> None:
        self.port = free_port()

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False


class Influxd1(ServerProcess):
    """InfluxDB 1.x (`influxd run`) with HTTP and RPC on loopback and meta, data and WAL in its folder."""

    name = "influxd"
    binary = "influxd"
    host = LOOPBACK

    def __init__(
        self,
        root: Path | str,
        *,
        http_port: int | None = None,
        rpc_port: int | None = None,
        startup_timeout: float | None = None,
    ) -> None:
        super().__init__(root, startup_timeout=startup_timeout)
        # With one port fixed, a bind failure may well be on that one: retrying would not help.
        self._ports_chosen_by_us = http_port is None and rpc_port is None
        picked = _free_ports(2)
        self.http_port = picked[0] if http_port is None else http_port
        self.rpc_port = picked[1] if rpc_port is None else rpc_port
        self.config_path = self.root / "influxdb.conf"

    @property
    def port(self) -> int:
        return self.http_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def config_text(self) -> str:
        root = self.root
        return f"""\
# Written by healthhut.devstack on every start; edits are lost.
# Debian's build reads reporting-enabled, upstream reads reporting-disabled; influxd ignores unknown keys.
reporting-enabled = false
reporting-disabled = true
# The RPC (backup/restore) service listens too; its default :8088 would collide with other instances.
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{root / "meta"}"
  logging-enabled = false

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.http_port}"
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false
"""

    def _build_command(self, executable: Path) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [str(executable), "run", "-config", str(self.config_path)]

    def _child_env(self) -> dict[str, str]:
        # influxd lets INFLUXDB_* variables override the config file (INFLUXDB_HTTP_BIND_ADDRESS, ...).
        return {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}

    def _listen_ports(self) -> tuple[int, ...]:
        return (self.http_port, self.rpc_port)

    def _choose_new_ports(self) -> None:
        self.http_port, self.rpc_port = _free_ports(2)

    def _probe(self) -> bool:
        return _http_status(f"{self.url}/ping") == 204

    def query(self, q: str, db: str | None = None, *, epoch: str | None = None) -> dict[str, Any]:
        """Run InfluxQL `q` and return the parsed JSON reply.

        Raises ServerRequestError on an HTTP error and also when a statement fails, which influxd reports
        with status 200 and an "error" inside the result. `epoch` ("ns", "ms", ...) returns integer times
        instead of RFC 3339 strings.
        """
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        # POST, because influxd 1.x refuses CREATE, DROP and the like over GET.
        url = f"{self.url}/query"
        _, body = _http_request(
            self.name,
            "POST",
            url,
            body=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        reply: dict[str, Any] = json.loads(body)
        errors = [reply["error"]] if "error" in reply else []
        errors += [result["error"] for result in reply.get("results", []) if "error" in result]
        if errors:
            raise ServerRequestError(
                f"query {q!r} failed: {'; '.join(errors)}",
                server=self.name,
                url=url,
                status=200,
                body=body.decode("utf-8", "replace"),
            )
        return reply

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def write(self, lines: str | Iterable[str], db: str, *, precision: str = "ns") -> None:
        """Write line protocol through the 1.x `/write` endpoint."""
        text = lines if isinstance(lines, str) else "\n".join(lines)
        query = urllib.parse.urlencode({"db": db, "precision": precision})
        _http_request(self.name, "POST", f"{self.url}/write?{query}", body=text.encode())


class VictoriaMetrics(ServerProcess):
    """Single-node VictoriaMetrics with its storage in its folder; it accepts the InfluxDB v2 write API.

    Defaults differ from a stock server so that tests can read back what they wrote at once and see
    InfluxDB's overwrite semantics: no 30 s query latency offset, no result cache, and deduplication per
    millisecond (so writing the same point twice leaves one sample, the last one written).
    """

    name = "victoria-metrics"
    binary = "victoria-metrics"
    host = LOOPBACK

    def __init__(
        self,
        root: Path | str,
        *,
        port: int | None = None,
        dedup_interval: str | None = "1ms",
        extra_args: Sequence[str] = (),
        startup_timeout: float | None = None,
    ) -> None:
        super().__init__(root, startup_timeout=startup_timeout)
        self._ports_chosen_by_us = port is None
        self.port = free_port() if port is None else port
        self.dedup_interval = dedup_interval
        self.extra_args = tuple(extra_args)
        self.data_dir = self.root / "data"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _build_command(self, executable: Path) -> list[str]:
        # Only -httpListenAddr has a default; the graphite, influx and opentsdb listeners stay off unless
        # their -*ListenAddr flag is given.
        command = [
            str(executable),
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ]
        if self.dedup_interval is not None:
            command.append(f"-dedup.minScrapeInterval={self.dedup_interval}")
        return command + list(self.extra_args)

    def _listen_ports(self) -> tuple[int, ...]:
        return (self.port,)

    def _choose_new_ports(self) -> None:
        self.port = free_port()

    def _probe(self) -> bool:
        return _http_status(f"{self.url}/health") == 200

    def _get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        _, body = _http_request(self.name, "GET", f"{self.url}{path}{query}")
        return body

    def write(self, lines: str | Iterable[str], *, precision: str = "ns") -> None:
        """Write line protocol through the InfluxDB v2 API (`/api/v2/write`).

        VictoriaMetrics answers 204 even for lines it cannot parse; it only logs them.
        """
        text = lines if isinstance(lines, str) else "\n".join(lines)
        query = urllib.parse.urlencode({"precision": precision})
        _http_request(self.name, "POST", f"{self.url}/api/v2/write?{query}", body=text.encode())

    def force_flush(self) -> None:
        """Make everything written so far visible to queries and exports."""
        self._get("/internal/force_flush")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching the selector `match`, one dict per series.

        Each dict has "metric" (labels, including "__name__"), "values" and "timestamps" (ms).
        """
        body = self._get("/api/v1/export", [("match[]", match)])
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        """Evaluate an instant PromQL/MetricsQL query (at Unix time `at`, or now) and return its "data"."""
        params = [("query", promql)]
        if at is not None:
            params.append(("time", repr(at)))
        reply: dict[str, Any] = json.loads(self._get("/api/v1/query", params))
        data: dict[str, Any] = reply["data"]
        return data


class LocalStack:
    """Any subset of mosquitto, influxd and VictoriaMetrics, started together under one root folder.

    Without `root` the stack owns a temporary folder and removes it on stop. Each server gets a folder
    of its own and free loopback ports, so several stacks can run at once.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        mosquitto: bool = True,
        influxd: bool = True,
        victoria: bool = True,
        mosquitto_config: Sequence[str] = (),
        startup_timeout: float | None = None,
    ) -> None:
        self._given_root = None if root is None else Path(root)
        self._want = {"mosquitto": mosquitto, "influxd": influxd, "victoria": victoria}
        self._mosquitto_config = tuple(mosquitto_config)
        self._startup_timeout = startup_timeout
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._root: Path | None = None
        self._mosquitto: Mosquitto | None = None
        self._influxd: Influxd1 | None = None
        self._victoria: VictoriaMetrics | None = None
        self._started = False

    @property
    def root(self) -> Path:
        if self._root is None:
            raise ServerError("the stack has not been started", server="stack")
        return self._root

    @property
    def mosquitto(self) -> Mosquitto:
        return self._member(self._mosquitto, "mosquitto")

    @property
    def influxd(self) -> Influxd1:
        return self._member(self._influxd, "influxd")

    @property
    def victoria(self) -> VictoriaMetrics:
        return self._member(self._victoria, "victoria")

    @property
    def servers(self) -> list[ServerProcess]:
        return [s for s in (self._mosquitto, self._influxd, self._victoria) if s is not None]

    def _member(self, server: _S | None, name: str) -> _S:
        if server is None:
            raise ServerError(f"{name} is not part of this stack, or the stack was never started", server="stack")
        return server

    def start(self) -> Self:
        """Start the servers; if any fails, stop those already started and raise its ServerError."""
        if self._started:
            raise ServerError("already started", server="stack")
        self._started = True
        if self._given_root is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="healthhut-devstack-")
            self._root = Path(self._tempdir.name)
        else:
            self._root = self._given_root
        self._root.mkdir(parents=True, exist_ok=True)
        timeout = self._startup_timeout
        if self._want["mosquitto"]:
            self._mosquitto = Mosquitto(
                self._root / "mosquitto", extra_config=self._mosquitto_config, startup_timeout=timeout
            )
        if self._want["influxd"]:
            self._influxd = Influxd1(self._root / "influxd", startup_timeout=timeout)
        if self._want["victoria"]:
            self._victoria = VictoriaMetrics(self._root / "victoria-metrics", startup_timeout=timeout)
        try:
            # Launch all before waiting for any, so they boot in parallel without threads (see _child_setup).
            for server in self.servers:
                server.launch()
            for server in self.servers:
                server.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every server (all of them, even if stopping one fails) and remove an owned root folder."""
        servers = self.servers
        for server in servers:
            server._request_stop()
        with contextlib.ExitStack() as cleanup:
            if self._tempdir is not None:
                cleanup.callback(self._tempdir.cleanup)
            for server in servers:
                cleanup.callback(server.stop, timeout)
        self._tempdir = None
        # The servers stay reachable after stop, so that callers can still read their logs and state.
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_LIVE: set[ServerProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    # A server that was never stopped would outlive us where PR_SET_PDEATHSIG is not set.
    for server in list(_LIVE):
        logger.warning("stopping %r at exit; it was never stopped", server)
        server.stop(timeout=3.0)
