"""Reading the world: PromQL construction, the Prometheus client, and recordings of both."""
