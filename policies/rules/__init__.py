"""The rules, grouped by concern; `policies.catalog` lists them all."""
