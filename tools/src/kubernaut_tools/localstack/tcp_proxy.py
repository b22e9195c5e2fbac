"""A TCP proxy the local stack can put between the gateway and one Redis node, for partition faults.

``python -m kubernaut_tools.localstack.tcp_proxy LISTEN_PORT TARGET_HOST TARGET_PORT [HOST]``. SIGUSR1
black-holes the path (new connections are accepted, nothing is forwarded either way), SIGUSR2 heals
it: bytes held meanwhile are then delivered, as TCP retransmission would after a real partition. Only the
gateway goes through it; Sentinel and the replicas reach the node directly, so they still see it healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

_CHUNK = 65536


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.open = asyncio.Event()
        self.open.set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.open.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self.open.wait()  # read while healthy, partitioned before the write: held
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await self.open.wait()  # a connection opened during the partition goes nowhere until it heals
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    proxy = Proxy(target_host, target_port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.open.clear)
    loop.add_signal_handler(signal.SIGUSR2, proxy.open.set)
    server = await asyncio.start_server(proxy.handle, listen_host, listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        sys.exit(
            "usage: python -m kubernaut_tools.localstack.tcp_proxy LISTEN_PORT TARGET_HOST TARGET_PORT [HOST]"
        )
    host = argv[3] if len(argv) == 4 else "127.0.0.1"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(argv[0]), argv[1], int(argv[2])))


if __name__ == "__main__":
    main(sys.argv[1:])
