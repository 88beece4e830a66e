terraform {
  # One floor for every module and environment (see ../versions.tf). No provider: the module only
  # computes a document, so the tests can apply it on its own (tests/unit/terraform).
  required_version = ">= 1.11"
}
