"""healthhut.collector: the cloud ingest and alerting service."""
