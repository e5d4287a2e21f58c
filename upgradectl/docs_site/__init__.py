"""The documentation site's reference pages, generated from the code so they cannot drift (`make docs`)."""
