"""The Ray Serve applications: one per service, each at its own route prefix.

``applications`` gives them to ``serve.run_many`` (``secretary serve --ray``); ``build``
is the same application for a Serve config file (KubeRay's ``serveConfigV2``), where each
entry names ``secretary.scale.app:build`` with its service in ``args`` and the settings
come from the pods' environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve

from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.scale.deployments import service_deployment
from secretary.scale.settings import SERVICE_NAMES


def check_services(names: Sequence[str]) -> list[str]:
    """``names`` if every one can run on Serve, else an InvalidRequestError saying why."""
    refused = [n for n in names if n not in SERVICE_NAMES]
    if refused:
        raise InvalidRequestError(
            f"{', '.join(refused)} cannot run on Ray Serve (its proxy carries HTTP and "
            f"WebSocket, not Wyoming's TCP); on Ray: {', '.join(SERVICE_NAMES)}")
    return list(names)


def applications(settings: Settings, names: Sequence[str]) -> list[serve.RunTarget]:
    """``serve.run_many``'s targets: each service an application named after it."""
    deployed = check_services(names)
    return [serve.RunTarget(service_deployment(settings, name, deployed), name=name,
                            route_prefix=settings.ray.route_prefix(name))
            for name in deployed]


def build(args: dict[str, Any]) -> Any:
    """An application builder for Serve config files::

        - name: stt
          route_prefix: /stt
          import_path: secretary.scale.app:build
          args: {service: stt, deployed: [stt, tts, avatar, ui, realtime, calendar]}

    ``deployed`` names the services of the whole config, whose stages the conversation
    and realtime call through the proxy (default: this one only)."""
    service = str(args.get("service", ""))
    deployed = args.get("deployed") or [service]
    if isinstance(deployed, str):
        deployed = [d.strip() for d in deployed.split(",") if d.strip()]
    check_services([service, *deployed])
    return service_deployment(Settings(), service, deployed)
