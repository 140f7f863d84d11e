"""Mutual TLS between the operator and the agents (docs/agent.md).

One CA of the deployment signs every certificate:
- each agent's server certificate (extended key usage serverAuth, the
  node's address or name as subject alternative name), and
- the operator's client certificate (extended key usage clientAuth).

An agent accepts a connection only from a client whose certificate that CA
signed for client authentication; OpenSSL checks the key usage, so one LB
node's own certificate cannot be used to push to another. The operator
checks the agent's certificate against the CA and the address it connects
to. The bearer token stays a second check behind the TLS handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerTls:
    """What an agent serves with: its certificate and key, and the CA its clients' certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path

    def uvicorn(self) -> dict[str, object]:
        """uvicorn.Config's arguments for it."""
        return {
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
            "ssl_ca_certs": str(self.client_ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }

    def check(self) -> None:
        """Raise ssl.SSLError / OSError if the files do not make a usable context."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.client_ca)


@dataclass(frozen=True)
class ClientTls:
    """What the operator connects with: the CA the agents' certificates chain to, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx
