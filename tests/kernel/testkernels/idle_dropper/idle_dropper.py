"""A minimal Jupyter kernel for tests: answers kernel_info normally, and answers every
execute_request with a stream output and an ok reply but never publishes `status: idle` for it,
as happens when a kernel's IOPub queue overflows and drops messages."""
import json
import sys

import zmq
from jupyter_client.session import Session

with open(sys.argv[1]) as f:
    info = json.load(f)
session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
context = zmq.Context()


def endpoint(port_name):
    if info["transport"] == "ipc":
        return "ipc://%s-%s" % (info["ip"], info[port_name])
    return "tcp://%s:%s" % (info["ip"], info[port_name])


shell = context.socket(zmq.ROUTER)
shell.bind(endpoint("shell_port"))
control = context.socket(zmq.ROUTER)
control.bind(endpoint("control_port"))
iopub = context.socket(zmq.PUB)
iopub.bind(endpoint("iopub_port"))
stdin = context.socket(zmq.ROUTER)
stdin.bind(endpoint("stdin_port"))
heartbeat = context.socket(zmq.ROUTER)
heartbeat.bind(endpoint("hb_port"))

poller = zmq.Poller()
for socket in (shell, control, heartbeat):
    poller.register(socket, zmq.POLLIN)
count = 0
while True:
    for socket, _ in poller.poll():
        if socket is heartbeat:
            heartbeat.send_multipart(heartbeat.recv_multipart())
            continue
        identities, frames = session.feed_identities(socket.recv_multipart())
        request = session.deserialize(frames)
        kind = request["header"]["msg_type"]
        if kind == "kernel_info_request":
            session.send(iopub, "status", {"execution_state": "busy"}, parent=request)
            session.send(socket, "kernel_info_reply",
                         {"status": "ok", "protocol_version": "5.3",
                          "implementation": "idle_dropper",
                          "language_info": {"name": "python", "version": "3"}},
                         parent=request, ident=identities)
            session.send(iopub, "status", {"execution_state": "idle"}, parent=request)
        elif kind == "execute_request":
            count += 1
            session.send(iopub, "status", {"execution_state": "busy"}, parent=request)
            session.send(iopub, "stream", {"name": "stdout", "text": "ran\n"}, parent=request)
            session.send(socket, "execute_reply",
                         {"status": "ok", "execution_count": count, "user_expressions": {}},
                         parent=request, ident=identities)
            # No "status: idle" here.
        elif kind == "shutdown_request":
            session.send(socket, "shutdown_reply", {"status": "ok", "restart": False},
                         parent=request, ident=identities)
            sys.exit(0)
