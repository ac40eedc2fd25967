"""A first cellgate session with nothing but the stubs generated from proto/.

    protoc -Iproto --python_out=/tmp/cg --grpc_python_out=/tmp/cg \
        --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/cellgate/v1/*.proto
    PYTHONPATH=/tmp/cg /usr/bin/python3 examples/first_session.py 127.0.0.1:50051
"""
import sys

import grpc
from cellgate.v1 import execution_pb2
from cellgate.v1 import kernel_gateway_pb2 as api
from cellgate.v1 import kernel_gateway_pb2_grpc as rpc

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
gateway = rpc.KernelGatewayStub(grpc.insecure_channel(target))

kernel = gateway.StartKernel(api.StartKernelRequest())            # a python3 kernel
print("kernel", kernel.kernel_id, "pid", kernel.pid)
for source in ["x = 10", "y = x * 2", "print(y)"]:
    gateway.AddCell(api.AddCellRequest(kernel_id=kernel.kernel_id, source=source))
result = gateway.RunAll(api.RunAllRequest(kernel_id=kernel.kernel_id))
print("last cell printed:", result.results[-1].text, end="")

answer = gateway.Execute(api.ExecuteRequest(kernel_id=kernel.kernel_id, code="y / 0"))
print("status:", execution_pb2.ExecutionStatus.Name(answer.status), "error:", answer.error.ename)

# Everything that happened, replayable from any seq (follow=True keeps the stream open).
for event in gateway.StreamOutputs(api.StreamOutputsRequest(kernel_id=kernel.kernel_id)):
    print("event", event.seq, event.WhichOneof("event"))
gateway.ShutdownKernel(api.ShutdownKernelRequest(kernel_id=kernel.kernel_id))
