"""The control plane's documents, shared by the API server, the operator and
the agents: what is stored (load balancers, their status, LBN groups, LBN
registrations) and what the operator sends to each LB node."""
