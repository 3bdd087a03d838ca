"""The aws backend: one EC2 instance per host, made with Pulumi (backend.py); what it checks
before anything is created (preflight.py) and what a classroom costs (cost.py)."""
