# The example agent: Debian's gRPC for Python and the cellgate client from this repository.
FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-grpcio python3-protobuf \
 && rm -rf /var/lib/apt/lists/*
COPY client/python/cellgate /opt/agent/cellgate
COPY deploy/compose/agent.py /opt/agent/agent.py
WORKDIR /opt/agent
CMD ["python3", "agent.py"]
