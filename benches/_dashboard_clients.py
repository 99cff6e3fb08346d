"""``python -m benches._dashboard_clients URL N``: N dashboard clients (WebSockets) reading every
state ``bot4 serve`` pushes until SIGTERM; prints ``READY`` once all are connected, then at the
end the states received."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp


async def main(url: str, n: int) -> None:
    received = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal received
        async with session.ws_connect(url + "ws", max_msg_size=0) as ws:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    received += 1

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(n)]
        while received < n:  # each gets the state on connecting
            await asyncio.sleep(0.05)
        print("READY", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(received, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
