"""The fault primitives the drills and fault tests use on a local stack: stop or signal one recorded
component, cut or heal the gateway's path to a Redis node (the chaos proxies), wait for a failover.

A mixin of `LocalStack`: the primitives act on its process table and topology.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from functools import partial
from typing import TYPE_CHECKING

from kubernaut_tools.localstack.processes import signal_process, stop, wait_until

if TYPE_CHECKING:
    from kubernaut_tools.localstack.launch import Launcher
    from kubernaut_tools.localstack.processes import ProcessRecord, ProcessTable
    from kubernaut_tools.localstack.topology import Endpoint, RunDir, Topology


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


class FaultPrimitives:
    if TYPE_CHECKING:  # provided by LocalStack
        table: ProcessTable
        launcher: Launcher
        topology: Topology
        run: RunDir

        def nodes(self) -> list[Endpoint]: ...
        def record(self, name: str) -> ProcessRecord | None: ...
        def current_master(self) -> tuple[str, int] | None: ...
        def _write_service_config(self) -> None: ...
        def _stop(self, names: list[str]) -> list[str]: ...

    def stop_component(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one recorded process with ``sig`` and wait until it has exited."""
        rec = self.table.get(name)
        if rec is not None:
            stop(rec, sig=sig)

    def signal_component(self, name: str, sig: signal.Signals) -> bool:
        """Send ``sig`` (e.g. SIGSTOP/SIGCONT) to a recorded component without waiting for anything."""
        rec = self.table.get(name)
        return rec is not None and signal_process(rec, sig)

    @property
    def chaos_proxy(self) -> bool:
        return self.run.chaos_proxy_marker.exists()

    def proxy_name(self, node: str) -> str:
        return f"proxy-{node}"

    def _start_proxies(self) -> None:
        if not self.chaos_proxy:
            return
        host = self.topology.host
        for node, port in zip(self.nodes(), self.topology.proxy_ports, strict=True):
            name = self.proxy_name(node.name)
            if self.record(name) is None:
                argv = [
                    sys.executable,
                    "-m",
                    "kubernaut_tools.localstack.tcp_proxy",
                    str(port),
                    host,
                    str(node.port),
                    host,
                ]
                self.launcher.spawn(name, argv, marker="kubernaut_tools.localstack.tcp_proxy " + str(port))
        for port in self.topology.proxy_ports:
            wait_until(partial(_listening, host, port), timeout=10, what=f"the chaos proxy on {host}:{port}")

    def remove_chaos_proxy(self) -> None:
        """Stop the chaos proxies and write the gateway's configuration without them (the gateway must
        not be running: it would keep connecting through them)."""
        if self.record("gateway") is not None:
            raise RuntimeError("stop the gateway before removing the chaos proxies")
        self.run.chaos_proxy_marker.unlink(missing_ok=True)
        self._write_service_config()
        self._stop([self.proxy_name(n.name) for n in self.nodes()])

    def partition(self, node: str, cut: bool) -> None:
        """Black-hole (``cut``) or heal the gateway's path to ``node`` (its chaos proxy); Sentinel and the
        replicas still reach the node directly."""
        if not self.chaos_proxy or not self.signal_component(
            self.proxy_name(node), signal.SIGUSR1 if cut else signal.SIGUSR2
        ):
            raise RuntimeError(f"no chaos proxy in front of {node}: start the stack with `--chaos-proxy`")

    def wait_for_new_master(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Block until a majority of sentinels names a master other than ``old``; return it."""
        start = time.monotonic()
        result: list[tuple[str, int]] = []

        def switched() -> bool:
            m = self.current_master()
            if m is not None and m != old:
                result.append(m)
                return True
            return False

        wait_until(
            switched,
            timeout=timeout,
            interval=0.05,
            what=f"a new master (old {old}) after {time.monotonic() - start:.0f}s",
        )
        return result[-1]
