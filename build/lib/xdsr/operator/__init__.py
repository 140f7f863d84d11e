"""The operator: reconciles load balancers onto groups of LB nodes."""
