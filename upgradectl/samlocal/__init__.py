"""`sam local invoke` on this machine: a stand-in Lambda base image, SAM's container engine, every function invoked.

Not deployed: tooling for `make sam-local-image` and `make sam-invoke` (docs/howto/sam-local-invoke.md).
"""
