"""The demos: small clouds in network namespaces, built and torn down by `xdsr demo`."""
