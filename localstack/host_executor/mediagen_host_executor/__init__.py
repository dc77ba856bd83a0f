"""mediagen's LocalStack Lambda executor for machines without Docker: runs `bootstrap` as a host
process (see executor.py and localstack/README.md)."""
