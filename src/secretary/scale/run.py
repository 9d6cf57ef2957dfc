"""``secretary serve --ray [ADDRESS]``: deploy the services on a Ray cluster and keep them
there until the command is stopped (Ctrl-C, SIGTERM), like ``serve run``.

``local`` starts a Ray instance on this machine for the command (and stops it after);
``auto`` or an address joins a running cluster, whose nodes must have the same secretary
installed. The services' applications are removed from the cluster when the command ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence

from secretary.config import Settings
from secretary.errors import InvalidRequestError

log = logging.getLogger(__name__)


def connect(address: str) -> None:
    """Join the cluster at ``address``, or start one here for ``local``."""
    import ray

    from secretary.scale import proxy

    # This project runs where its users keep their data: no usage reports unless asked.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Serve's proxies answer their own errors in the services' JSON shape. A local
    # instance's processes inherit this; a cluster's proxies get it where Serve starts in
    # this job (on Kubernetes, the manifests set it on every node).
    os.environ.setdefault(proxy.ENVIRONMENT, proxy.CALLBACK)
    runtime_env = {"env_vars": {proxy.ENVIRONMENT: os.environ[proxy.ENVIRONMENT]}}
    if address == "local":
        ray.init(include_dashboard=False, runtime_env=runtime_env)
    else:
        ray.init(address=address, runtime_env=runtime_env)


def deploy(settings: Settings, names: Sequence[str]) -> list[str]:
    """Start Serve's proxies (one per node, on SECRETARY_HOST:SECRETARY_RAY_PORT) and run
    the services' applications; returns the URLs they answer at. Waits until every
    application is running."""
    from ray import serve

    from secretary.scale.app import applications

    targets = applications(settings, names)
    serve.start(http_options={"host": settings.host, "port": settings.ray.port},
                proxy_location="EveryNode")
    serve.run_many(targets)
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    return [f"http://{host}:{settings.ray.port}{t.route_prefix.rstrip('/')}/ ({t.name})"
            for t in targets]


def serve_on_ray(settings: Settings, names: Sequence[str], address: str | None = None) -> int:
    """Deploy ``names`` on the cluster at ``address`` (default SECRETARY_RAY_ADDRESS) and
    wait for SIGINT or SIGTERM."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise InvalidRequestError("secretary serve --ray needs Ray Serve: install "
                                  "secretary[ray] (pip install 'secretary[ray]')") from None
    from secretary.scale.app import check_services

    check_services(names)
    address = address or settings.ray.address
    connect(address)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for url in deploy(settings, names):
            log.info("serving %s", url)
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopping: removing the services from the cluster")
        if address == "local":
            serve.shutdown()
        else:
            for name in names:
                serve.delete(name)
        ray.shutdown()
    return 0
