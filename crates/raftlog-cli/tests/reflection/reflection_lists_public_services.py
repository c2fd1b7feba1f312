"""A new user's first look at a node, with Python's grpcio-reflection (v1alpha).

Usage: python3 reflection_lists_public_services.py HOST:PORT

Lists the services that server reflection reports on a node's client port, checks that they
are the public raftlog.v1 services, health and reflection, and not the internal transport
(served on the peer port only), then resolves the Produce service and the ErrorReason enum
through reflection's file descriptors. Exits non-zero, saying why, when anything differs.
"""

import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

PUBLIC = {
    "raftlog.v1.Admin",
    "raftlog.v1.Produce",
    "raftlog.v1.Fetch",
    "raftlog.v1.Groups",
    "grpc.health.v1.Health",
}
INTERNAL = "raftlog.internal.RaftTransport"
TIMEOUT_S = 10


def listed_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT_S))
    if len(responses) != 1:
        raise AssertionError(f"expected one answer, got {len(responses)}")
    answer = responses[0]
    if answer.HasField("error_response"):
        raise AssertionError(f"list_services failed: {answer.error_response}")
    return {service.name for service in answer.list_services_response.service}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with grpc.insecure_channel(sys.argv[1]) as channel:
        services = listed_services(channel)
        print("listed:", ", ".join(sorted(services)))
        missing = PUBLIC - services
        if missing:
            raise AssertionError(f"not listed: {sorted(missing)}")
        if INTERNAL in services:
            raise AssertionError(f"{INTERNAL} is listed but not served on this port")
        unexpected = {s for s in services - PUBLIC if not s.startswith("grpc.reflection.")}
        if unexpected:
            raise AssertionError(f"listed but not expected: {sorted(unexpected)}")

        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        produce = pool.FindServiceByName("raftlog.v1.Produce")
        methods = sorted(method.name for method in produce.methods)
        print("raftlog.v1.Produce:", ", ".join(methods))
        if "Produce" not in methods:
            raise AssertionError(f"raftlog.v1.Produce has no Produce method: {methods}")
        reasons = pool.FindEnumTypeByName("raftlog.v1.ErrorReason").values_by_name
        for name in ("ERROR_REASON_UNSPECIFIED", "NOT_LEADER", "TIMEOUT"):
            if name not in reasons:
                raise AssertionError(f"raftlog.v1.ErrorReason has no {name}")
        print(f"raftlog.v1.ErrorReason: {len(reasons)} values")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, grpc.RpcError, KeyError) as error:
        print(f"reflection check failed: {error}", file=sys.stderr)
        sys.exit(1)
