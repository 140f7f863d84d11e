"""The LB API server: the subset of OpenStack Octavia's v2 load-balancer API
that L2 direct server return can serve, over the store (docs/api.md).

It writes the user's intent (one LoadBalancer document per load balancer)
and derives what it shows from the operator's LoadBalancerStatus documents.
"""

from xdsr.apiserver.app import create_app
from xdsr.apiserver.auth import Caller, Token, TokenRegistry, TokensError, load_tokens
from xdsr.apiserver.server import ApiServer

__all__ = ["ApiServer", "Caller", "Token", "TokenRegistry", "TokensError", "create_app", "load_tokens"]
