"""gRPC server helpers: the standard health and reflection services on every server."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def add_health_and_reflection(server: grpc.aio.Server,
                              service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Register health (every service SERVING) and reflection; returns the health servicer."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    return servicer


async def mark_serving(servicer: health.aio.HealthServicer, service_names: Iterable[str]) -> None:
    """Report the overall server and each named service as SERVING."""
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in service_names:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
