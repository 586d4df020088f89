"""A gRPC server and a proxyless xDS client for the proxyless test.

  grpc_greeter.py server PORT NAME   answers every call with NAME
  grpc_greeter.py client TARGET      calls TARGET (an xds:/// target, with
                                     GRPC_XDS_BOOTSTRAP set) every 20 ms and
                                     prints who answered, or the error code

Raw bytes in and out, so no generated code is needed.
"""
import sys
import time
from concurrent import futures

import grpc

METHOD = "/mesh.test.Greeter/Hello"


def serve(port, name):
    def hello(request, context):
        return name.encode()

    handler = grpc.method_handlers_generic_handler(
        "mesh.test.Greeter",
        {"Hello": grpc.unary_unary_rpc_method_handler(hello)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target):
    channel = grpc.insecure_channel(target)
    hello = channel.unary_unary(METHOD)
    while True:
        try:
            print("ok " + hello(b"", timeout=2).decode(), flush=True)
        except grpc.RpcError as e:
            print(f"error {e.code().name}", flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        call(sys.argv[2])
