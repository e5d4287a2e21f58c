"""Container images and the registries that hold them (issue 22): references and their grammar
(`references.py`), the registry port and its errors (`registry.py`), the adapters (`distribution.py`: the
OCI distribution API v2; `ecr.py`: Amazon ECR), and the deploy's pre-flight rule (`preflight.py`: every
target and rollback image resolved to a digest, once per distinct image). docs/images.md says how a deploy
uses them. Imports nothing of the product but `upgrader.infra` (the cluster adapter's place in the layers)."""
