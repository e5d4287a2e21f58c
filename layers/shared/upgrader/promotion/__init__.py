"""Promotion: rings of customers (staging before production), per-component promotion rules, the evidence a
version leaves on each ring, and release trains of several components (issue 21; docs/rings.md).

Pure rules (`rings`, `rules`, `trains`, `evidence`) and their SQL (`evidence_repository`,
`rule_repository`). Imports the rollout (compatibility rules), the contract and the infrastructure; the
fleet (discovery's ring label), the API and the factory import it.
"""
