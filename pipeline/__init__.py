"""Job spec, Ray Data plan, runner, IO, manifest."""
