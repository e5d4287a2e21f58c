"""The API contract: the request and response models (pydantic), camelCase on the wire, and the patterns they check. Below the domain, which reads requests and builds responses with them."""
