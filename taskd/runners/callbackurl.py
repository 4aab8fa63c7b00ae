"""The address a container reaches taskd at, for ``TASKD_URL`` and the task callbacks.

Inside a container 127.0.0.1 is the container itself. On a bridge network (Docker's default)
the host is reachable at the network's gateway address, so taskd gives such containers
``http://<gateway>:<port>`` and, unless it listens on every address already, also listens on
the gateway address, serving the task callbacks only. With ``--public-url`` set that URL is
used as given; host networking keeps 127.0.0.1; containers on network ``none`` cannot call
back at all (a warning says so once).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from taskd.config import Settings
from taskd.log import get_logger

log = get_logger("taskd.docker")

_EVERY_ADDRESS = ("0.0.0.0", "::", "")


class CallbackAddress:
    """Works out (and caches) the callback URL for containers on a given network."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set by the HTTP layer: listen on this address too (task callbacks only).
        self.bind: Callable[[str], Awaitable[None]] | None = None
        self._urls: dict[str, str | None] = {}
        self._bound: set[str] = set()

    async def url_for(self, docker: Any, network: str) -> str | None:
        """The TASKD_URL for a container on ``network``; None keeps the default one."""
        if self.settings.public_url or network == "host" or network.startswith("container:"):
            return None
        if network in self._urls:
            return self._urls[network]
        url = None
        if network == "none":
            # With "auto" the runner has said already why it chose none.
            if self.settings.docker_network != "auto":
                log.warning(
                    "containers run with network 'none' and cannot call taskd back; "
                    "use --docker-network bridge (or host), or set --public-url"
                )
        else:
            gateway = _gateway(await docker._query_json(f"networks/{network}"))
            if gateway is None:
                log.warning("docker network has no IPv4 gateway; containers cannot call taskd "
                            "back unless --public-url is set", network=network)  # fmt: skip
            elif await self._listen(gateway):
                url = f"http://{gateway}:{self.settings.port}"
        self._urls[network] = url
        return url

    async def _listen(self, address: str) -> bool:
        if self.settings.host in _EVERY_ADDRESS or self.settings.host == address:
            return True
        if address in self._bound:
            return True
        if self.bind is None:
            return False
        try:
            await self.bind(address)
        except OSError as exc:
            log.warning("cannot listen for task callbacks on the docker network's gateway; "
                        "containers cannot call taskd back unless --public-url is set",
                        address=address, error=str(exc))  # fmt: skip
            return False
        self._bound.add(address)
        log.info("listening for task callbacks from containers", address=address,
                 port=self.settings.port)  # fmt: skip
        return True


def _gateway(info: dict[str, Any]) -> str | None:
    """The network's IPv4 gateway from its IPAM configuration."""
    for config in (info.get("IPAM") or {}).get("Config") or []:
        gateway = (config or {}).get("Gateway")
        if not gateway:
            continue
        try:
            if ipaddress.ip_address(gateway).version == 4:
                return gateway
        except ValueError:
            continue
    return None
