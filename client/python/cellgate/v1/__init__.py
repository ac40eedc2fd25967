"""Generated from proto/cellgate/v1 by scripts/gen-clients.sh."""
